"""A scoring job's settings (``ssm-signal score``'s options), checked when made."""

from __future__ import annotations

import dataclasses

from pipelines.errors import UsageError
from pipelines.score.long_files import LONG_BYTES
from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.runtime.sidecar import PRECISIONS, RUNTIMES


@dataclasses.dataclass
class ScoreConfig:
    model: str
    input: str
    output: str
    frames: bool = False
    batch_size: int = bounded(16, ge=1)
    num_workers: int = bounded(2, ge=0)
    accelerator: str = "auto"
    devices: str | int = 1
    strategy: str = "auto"
    fail_on_error: bool = False
    mlflow: bool = True
    log_output: bool = False
    ring: bool | None = None  # batches through a BatchRing: None = on a GPU, for jobs large enough (make_ring)
    ring_bytes: int = bounded(4 << 30, ge=0)  # at most this much page-locked host memory for the ring
    direct_wav: bool = True  # PCM16 WAV read by one os.read and a header walk (False: soundfile)
    part_rows: int = bounded(16384, ge=1)  # rows per Parquet part (several batches; 1: a part per batch)
    cuda_graphs: bool = True  # on a GPU, the forward replayed as CUDA graphs (BatchGraphs); False: eager
    long_bytes: int = bounded(LONG_BYTES, ge=0)  # audio decoding to more than this is read in blocks (pipelines.score.long_files)
    runtime: str = "torch"  # "onnx": the bundle's ONNX export in onnxruntime, on the CPU (pipelines.score.runtime)
    onnx: str | None = None  # the export's folder (default: the bundle directory's onnx/); --runtime onnx only
    precision: str = "float32"  # "int8": the export's quantized graphs; --runtime onnx only

    def __post_init__(self):
        check_bounds(self, lambda name: f"--{name.replace('_', '-')}", UsageError)
        if self.runtime not in RUNTIMES:
            raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
