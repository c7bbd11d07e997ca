"""ssm_signal.runtime imports and streams with torch made unimportable: numpy and onnxruntime only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ssm_signal.streaming import StreamConfig, StreamingSession
from tests.streaming.conftest import speechlike

ROOT = Path(__file__).resolve().parents[2]

# a child interpreter in which torch (and the exporter's packages) cannot be imported; it streams a
# signal through the exported model, snapshots and restores halfway, and saves the scores and events
_CHILD = r"""
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchaudio", "onnx", "onnxscript", "safetensors", "pipelines"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Block())
import numpy as np
from ssm_signal.runtime import OnnxSession

export, signal, out = sys.argv[1:4]
x = np.load(signal)
a = OnnxSession(export)
first = a.push(x[:30001], 48000)
b = OnnxSession.restore(export, a.snapshot())
rest = [b.push(x[30001:70000], 48000), b.push(x[70000:], 48000), b.flush()]
ups = [first] + rest
np.save(out, np.concatenate([u.frame_scores for u in ups]))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchaudio", "safetensors"))
print(json.dumps({"loaded": loaded, "frames": b.frames}))
"""


def test_runtime_streams_without_torch(exported, tmp_path):
    bundle, out = exported("kws_default")
    x = speechlike(3.0, 48000, 5)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    report = __import__("json").loads(r.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and report["frames"] == 300
    s = StreamingSession(bundle, config=StreamConfig(compile=False))
    ref = np.concatenate([s.push(x, 48000).frame_scores, s.flush().frame_scores])
    got = np.load(tmp_path / "y.npy")
    assert got.shape == ref.shape == (300, 22)
    assert np.abs(got - ref).max() <= 1e-4
