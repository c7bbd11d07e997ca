"""The model a scoring job runs: the bundle's torch model, or its ONNX export (``--runtime onnx``).

Both give the per-frame outputs of whole signals from a zero state, the same function up to float
rounding (int8: up to quantization), through the same two calls the job's paths make:

    runner.outputs(x)             a padded batch (B, L, C) at the bundle's rate -> (B, L // hop, out_dim)
    y, state = runner.run(x, s)   one window of a long file, the state carried (s = runner.init_state(1))

Rows record the runner's ``fingerprint``: the bundle's for torch, the bundle's marked with the runtime
and precision for ONNX, so a resumed job never mixes rows of two runtimes in one output.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipelines.errors import UsageError
from ssm_signal.bundle import Bundle
from ssm_signal.runtime.sidecar import RUNTIMES, runtime_label

__all__ = ["RUNTIMES", "OnnxFrames", "TorchFrames", "frame_runner"]


class TorchFrames:
    """The bundle's own model on ``device``."""

    name = runtime_label("torch")

    def __init__(self, bundle: Bundle, device: torch.device | None = None):
        self.bundle, self.device = bundle, device
        self.fingerprint = bundle.fingerprint

    def outputs(self, x: Tensor) -> Tensor:
        return self.bundle.frame_outputs(x, check_values=False)

    def init_state(self, batch_size: int):
        return self.bundle.model.init_state(batch_size, device=self.device)

    def run(self, x: Tensor, state):
        return self.bundle.model._forward(x.to(self.device), state, phase=0)


class OnnxFrames:
    """The bundle's ONNX export (``ssm-signal export``) in onnxruntime on the CPU: ``export`` is its folder
    (default: the bundle directory's onnx/), ``precision`` "float32" or "int8". The export must be of
    this very bundle (its sidecar's fingerprint), else UsageError."""

    def __init__(self, bundle: Bundle, export: str | None = None, precision: str = "float32"):
        from pipelines.export import open_export  # onnx and onnxruntime: only for this runtime

        self.model = open_export(bundle, export, precision)
        self.hop = bundle.model.samples_per_frame
        self.precision = precision
        self.name = runtime_label("onnx", precision)
        self.fingerprint = f"{bundle.fingerprint}+onnx-{precision}"

    def outputs(self, x: Tensor) -> Tensor:
        return self.run(x, self.init_state(x.shape[0]))[0]

    def init_state(self, batch_size: int) -> dict:
        return self.model.init_model_state(batch_size)

    def run(self, x: Tensor, state: dict) -> tuple[Tensor, dict]:
        """Whole frames of x are run (a partial frame at the end is a file's end: dropped, as torch's does)."""
        whole = x.shape[1] // self.hop * self.hop
        y, state = self.model.run(x[:, :whole].float().cpu().numpy(), state)
        return torch.from_numpy(y), state


def frame_runner(bundle: Bundle, runtime: str, device: torch.device | None = None, export: str | None = None,
                 precision: str = "float32") -> TorchFrames | OnnxFrames:
    if runtime == "onnx":
        return OnnxFrames(bundle, export, precision)
    if export is not None or precision != "float32":
        raise UsageError("--onnx and --precision are options of --runtime onnx")
    return TorchFrames(bundle, device)
