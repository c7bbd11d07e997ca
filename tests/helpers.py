"""Test helpers: relative errors, random chunkings, folding a module over chunks or steps."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from ssm_signal.state import State


def rel_err(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b| (b is the reference); 0 for two empty tensors of one shape (a state field of a
    zero-length window)."""
    a, b = a.detach().double(), b.detach().double()
    if b.numel() == 0:
        assert a.shape == b.shape, (a.shape, b.shape)
        return 0.0
    scale = b.abs().max().clamp_min(1e-30)
    return float((a - b).abs().max() / scale)


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b|, in float64; 0 for empty tensors."""
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0


def state_rel_err(a: State, b: State) -> float:
    da, db = a.state_dict(), b.state_dict()
    assert da.keys() == db.keys()
    return max((rel_err(da[k], db[k]) for k in da if db[k].is_floating_point()), default=0.0)


def assert_states_equal_int(a: State, b: State) -> None:
    da, db = a.state_dict(), b.state_dict()
    for k in da:
        if not db[k].is_floating_point():
            assert torch.equal(da[k], db[k]), k


def random_splits(length: int, max_chunk: int, rng: random.Random) -> list[int]:
    """Chunk lengths summing to ``length``: always a 1, and some longer than ``max_chunk``."""
    sizes = [1]
    if length > max_chunk + 2:
        sizes.append(max_chunk + 1 + rng.randrange(max(1, length - max_chunk - 2)) // 2)
    while sum(sizes) < length:
        sizes.append(rng.randint(1, max_chunk))
    sizes[-1] -= sum(sizes) - length
    sizes = [s for s in sizes if s > 0]
    rng.shuffle(sizes)
    return sizes


def chunk_sizes(length: int, chunk: int | str, seed: int, max_chunk: int = 700) -> list[int]:
    """Chunk lengths that cover ``length``: all ``chunk`` long but the last, or random ones (up to
    ``max_chunk``) for ``chunk == "random"``; no empty chunk."""
    if chunk == "random":
        sizes = random_splits(length, max_chunk, random.Random(seed))
    else:
        sizes = [chunk] * (length // chunk) + [length % chunk]
    return [c for c in sizes if c]


def fold_chunks(module, x: Tensor, state: State, sizes: list[int]) -> tuple[Tensor, State]:
    ys, t = [], 0
    for n in sizes:
        y, state = module(x[:, t:t + n], state)
        ys.append(y)
        t += n
    return torch.cat(ys, dim=1), state


def assert_chunks_equal_whole(module, x: Tensor, sizes: list[int], *, atol: float, state_atol: float = 0.0
                              ) -> tuple[Tensor, State]:
    """Fold ``module`` over ``x`` cut into chunks of ``sizes``, from a zero state in x's dtype, and check it
    against one call on the whole of ``x``: outputs within ``atol``, floating state tensors within
    ``state_atol`` (0: equal), the others equal. Returns the folded output and final state."""
    y_ref, s_ref = module(x)
    y, s = fold_chunks(module, x, module.init_state(x.shape[0], dtype=x.dtype), sizes)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    assert max_abs_diff(y, y_ref) <= atol
    ref = s_ref.state_dict()
    for k, t in s.state_dict().items():
        assert max_abs_diff(t, ref[k]) <= (state_atol if t.is_floating_point() else 0), k
    return y, s


def fold_steps(module, x: Tensor, state: State) -> tuple[Tensor, State]:
    ys = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


def random_state(module, batch: int, dtype=torch.float32) -> State:
    """A non-zero state with the module's structure (integer counters kept valid)."""
    zero = module.init_state(batch, dtype=dtype)
    d = {}
    for k, t in zero.state_dict().items():
        if t.is_floating_point():
            d[k] = torch.randn_like(t) * 0.5
        elif k.endswith("__len__"):
            d[k] = t
        else:
            d[k] = torch.randint(0, 50, t.shape, dtype=t.dtype)
    return type(zero).from_state_dict(d)


def peak_hz(x: Tensor | np.ndarray, rate: int = 16000) -> float:
    """The frequency of the largest (Hann-windowed) FFT bin of a 1-D signal."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    spec = torch.fft.rfft(x * torch.hann_window(len(x), dtype=torch.float64)).abs()
    return float(torch.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


def best_lag(ref: Tensor, x: Tensor) -> int:
    """The start k maximising the normalised correlation of x with ref[k : k + len(x)] (FFT, no copies)."""
    n, m = len(ref), len(x)
    corr = torch.fft.irfft(torch.fft.rfft(ref.double()) * torch.fft.rfft(x.double(), n=n).conj(), n=n)[: n - m + 1]
    energy = torch.cat([torch.zeros(1, dtype=torch.float64), ref.double().pow(2).cumsum(0)])
    norms = (energy[m:] - energy[: n - m + 1]).clamp_min(1e-12).sqrt()
    return int((corr / norms).argmax())


def median_f0(x: Tensor, rate: int = 16000, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median F0 (Hz) over the voiced 40 ms frames of a 1-D signal, by autocorrelation (a check, not a tracker)."""
    y = torch.as_tensor(x, dtype=torch.float64).numpy()
    frame, hop, lo, hi = int(0.04 * rate), int(0.02 * rate), int(rate / fmax), int(rate / fmin)
    floor = 0.03 * np.abs(y).max()
    f0s = []
    for i in range(0, len(y) - frame, hop):
        s = y[i:i + frame] - y[i:i + frame].mean()
        if np.sqrt((s**2).mean()) < floor:
            continue
        ac = np.correlate(s, s, "full")[frame - 1:]
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.3 * ac[0]:
            f0s.append(rate / k)
    return float(np.median(f0s)) if f0s else float("nan")


def band_centroid(x: Tensor, rate: int = 16000, lo: float = 300.0, hi: float = 3000.0) -> float:
    """Power-weighted mean frequency (Hz) between lo and hi: where the formants sit."""
    w = torch.hann_window(1024, dtype=torch.float64)
    spec = torch.stft(torch.as_tensor(x, dtype=torch.float64), 1024, 256, window=w, return_complex=True)
    power = spec.abs().pow(2).mean(dim=1)
    f = torch.fft.rfftfreq(1024, 1 / rate, dtype=torch.float64)
    m = (f > lo) & (f < hi)
    return float((power[m] * f[m]).sum() / power[m].sum())


def tree_digest(root) -> str:
    """SHA-256 over the relative paths and bytes of every .wav below ``root`` (a generated set's identity)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*.wav")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def require_tool(name: str) -> str:
    """The path of a program ``make system-deps`` installs. Its absence fails the test, never skips it: a skip
    would let CI pass with the code that needs the program untested."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (make system-deps installs it)", pytrace=False)
    return path


def lively_encoder_(encoder: torch.nn.Module) -> torch.nn.Module:
    """Random speech-encoder weights that keep the signal's spread through its twenty convolutions (He-normal,
    zero bias). PyTorch's default initialisation lets it die out there: every clip would give the same features,
    and a test could not tell one clip's features from another's."""
    with torch.no_grad():
        for conv in encoder.convs:
            conv.weight.normal_(std=(2.0 / conv.weight[0].numel()) ** 0.5)
            if conv.bias is not None:
                conv.bias.zero_()
    return encoder


def assert_training_extras(plain: Path, root: Path, words, prefix: str, extras: int) -> list[Path]:
    """``root``, a keyword set generated like ``plain`` plus recorded clips named ``<prefix>*``, holds them in its
    training split only, counts them in its summary (``extras`` of them), and its generated clips are ``plain``'s
    (the same files, the same samples to the last bit of PCM-16). Returns the recorded clips."""
    import json

    import soundfile as sf

    from ssm_signal.data.speech_commands import SpeechCommands

    added = sorted(root.glob(f"*/{prefix}*.wav"))
    train = {str(p) for p in SpeechCommands(root, "training", words=words)._paths}
    assert added and all(str(p) in train for p in added)
    for subset in ("validation", "testing"):
        assert not any(Path(q).name.startswith(prefix) for q in SpeechCommands(root, subset, words=words)._paths)
    counts = [json.loads((r / "SUMMARY.json").read_text())["clips"] for r in (plain, root)]
    assert counts[1] == counts[0] + extras
    generated = sorted(p.relative_to(plain) for p in plain.glob("*/*.wav") if p.parent.name != "_background_noise_")
    assert generated == sorted(p.relative_to(root) for p in root.glob("*/*.wav")
                               if p.parent.name != "_background_noise_" and not p.name.startswith(prefix))
    for rel in generated[::3]:  # float rounding may move a sample by one step
        a, b = (sf.read(r / rel, dtype="int16")[0].astype(np.int32) for r in (plain, root))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, rel
    return added


REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module, registered in ``sys.modules`` under its name as when it
    runs (dataclasses look their module up there; one script imports another by name), loaded once."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)  # where a script's own ``import fetch_real_audio`` finds its sibling
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod
