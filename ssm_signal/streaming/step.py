"""The runners' wrappers around one frame of a whole SignalModel: ``model._step``.

``SignalModel._step(frame, state)`` is the model's own unchecked frame step (frontend, input
projection, backbone recurrence, head, at frame phase 0): no host synchronisation and no
data-dependent branch, so it compiles and captures. Nothing here re-implements any of it; this
module only wraps it for the fast paths, whose reference twin it stays:

- ``pool_step``: the step with a StreamPool tick's per-stream mask (streams without a frame this
  tick keep their state: a ``where`` per state tensor, inside the same graph);
- ``compiled``: ``torch.compile`` of ``model._step`` or of ``pool_step`` (CPU latency paths);
- ``AOTStep``: ``model._step`` exported and compiled ahead of time by AOTInductor (the session's
  latency path on CPU);
- ``FlatStep`` and ``FlatForward``: the step, and the forward over whole frames, over flat state tensors
  (what torch.export takes; the ONNX export's frame and chunk graphs);
- the CUDA-graph pool tick wraps ``model._step_``, the in-place form (``runners.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ssm_signal.cache import ENV_CACHE_DIR, cache_dir
from ssm_signal.compile import inductor_options
from ssm_signal.models import SignalModel, SignalModelState
from ssm_signal.state import State

log = logging.getLogger("ssm_signal.streaming")

# the log-mel's rfft is complex; inductor leaves it to the eager kernel and says so once per compile
_COMPLEX_FALLBACK = "Torchinductor does not support code generation for complex operators"


def _quiet_first_call(fn: Callable) -> Callable:
    """``fn`` whose first call (the one that compiles) hides inductor's complex-operator notice; the filter is
    scoped to that call, so the caller's own warning filters stay as they were."""
    first = True

    def call(*args):
        nonlocal first
        if not first:
            return fn(*args)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_COMPLEX_FALLBACK)
            out = fn(*args)
        first = False
        return out

    return call


def zip_states(fn: Callable[[Tensor, Tensor], Tensor], a: State, b: State) -> State:
    """A state whose tensors are ``fn(a_t, b_t)`` for corresponding tensors of a and b."""
    def go(x, y):
        if isinstance(x, Tensor):
            return fn(x, y)
        if isinstance(x, State):
            return type(x)(**{f.name: go(getattr(x, f.name), getattr(y, f.name)) for f in dataclasses.fields(x)})
        return tuple(go(u, v) for u, v in zip(x, y, strict=True))

    return go(a, b)


def masked(active: Tensor, new: State, old: State) -> State:
    """Per stream: ``new`` where ``active`` (B,) is True, else ``old``."""
    def pick(n: Tensor, o: Tensor) -> Tensor:
        return torch.where(active.reshape((-1,) + (1,) * (n.dim() - 1)), n, o)

    return zip_states(pick, new, old)


def pool_step(model: SignalModel, frames: Tensor, active: Tensor, state: SignalModelState
              ) -> tuple[Tensor, SignalModelState]:
    """frames (S, samples_per_frame, C), active (S,) bool -> y (S, out_dim), state (inactive slots unchanged)."""
    y, new = model._step(frames, state)
    return y, masked(active, new, state)


def _row_major(t: Tensor) -> Tensor:
    # a fresh row-major copy: .contiguous() would keep a size-1 batch dim's odd stride, which
    # the compiled step guards on
    return t.clone(memory_format=torch.contiguous_format)


def compiled(model: SignalModel, kind: str = "frame") -> Callable:
    """``torch.compile``d ``model._step`` (kind "frame") or :func:`pool_step` ("pool") for ``model``.

    Kept on the model, so every session of the model shares it (one compilation per process
    and batch size); shapes and strides are specialised, so keep the batch fixed (sessions: 1;
    pools: their slot count) and pass row-major tensors. The returned state's tensors are
    row-major too (size-1 dimensions included), so feeding it back does not recompile. Inductor's C++ wrapper cuts the Python
    overhead per call (about a quarter of a step this size). The first call compiles (seconds;
    a C++ compiler is needed on CPU).
    """
    if kind not in ("frame", "pool"):
        raise ValueError(f"kind must be frame or pool, got {kind!r}")
    table = model.__dict__.setdefault("_streaming_compiled", {})
    if kind not in table:
        if kind == "frame":
            def run(frame, state):
                y, new = model._step(frame, state)
                return y, new._apply(_row_major)
        else:
            def run(frames, active, state):
                y, new = pool_step(model, frames, active, state)
                return y, new._apply(_row_major)
        table[kind] = _quiet_first_call(torch.compile(run, fullgraph=True, dynamic=False,
                                                      options=inductor_options(model)))
    return table[kind]


# ---------------------------------------------------------------------------------------------------
# ahead-of-time compilation: the session's latency path on CPU
# ---------------------------------------------------------------------------------------------------
def restructure(template: State, tensors) -> State:
    """A state shaped like ``template`` holding ``tensors`` (in ``template.tensors()`` order)."""
    it = iter(tensors)
    return template._apply(lambda _: next(it))


def state_builder(template: State) -> Callable[[list[Tensor]], State]:
    """A fast :func:`restructure` for one structure: the traversal is planned once.

    Builds the frozen dataclasses without their ``__init__`` (States have no ``__post_init__``):
    a whole model state in microseconds instead of a generic traversal per call.
    """
    def plan(value):
        if isinstance(value, Tensor):
            return lambda it: next(it)
        if isinstance(value, State):
            cls, names = type(value), [f.name for f in dataclasses.fields(value)]
            subs = [plan(getattr(value, n)) for n in names]
            setter = object.__setattr__

            def make(it):
                obj = object.__new__(cls)
                for n, sub in zip(names, subs, strict=True):
                    setter(obj, n, sub(it))
                return obj
            return make
        subs = [plan(v) for v in value]
        return lambda it: tuple(sub(it) for sub in subs)

    root = plan(template)
    return lambda tensors: root(iter(tensors))


class FlatStep(torch.nn.Module):
    """``model._step`` over a flat tuple of state tensors (what torch.export takes): the graph that
    AOTInductor compiles here and that ``pipelines.export`` writes as ONNX.

    frame (B, samples_per_frame, C), then the state's tensors in ``template.tensors()`` order ->
    (y (B, out_dim), the new state's tensors in the same order)."""

    def __init__(self, model: SignalModel, template: SignalModelState):
        super().__init__()
        self.model, self.template = model, template

    def forward(self, frame: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        y, new = self.model._step(frame, restructure(self.template, flat))
        return (y, *(_row_major(t) for t in new.tensors()))


class FlatForward(FlatStep):
    """``model._forward`` over whole frames from frame phase 0, over a flat tuple of state tensors: the
    parallel form of :class:`FlatStep` (the same function over T frames, by the state contract), which
    ``pipelines.export`` writes as the ONNX chunk graph where the model's scans export.

    samples (B, T * samples_per_frame, C), then the state's tensors -> (y (B, T, out_dim), the new state's
    tensors in the same order)."""

    def forward(self, samples: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        y, new = self.model._forward(samples, restructure(self.template, flat), phase=0)
        return (y, *(_row_major(t) for t in new.tensors()))


class AOTStep:
    """``model._step`` for one model and batch size, exported (``torch.export``) and compiled
    ahead of time by AOTInductor into a shared library.

    A call costs the compiled kernels plus a C++ entry (no Dynamo guards, no Python wrapper):
    about half of a ``torch.compile``d call for the default keyword model on one CPU thread.
    The library is cached on disk under :func:`cache_dir`, keyed by the weights, the model
    configuration, the batch size and the torch version, so a process that loads the same
    bundle again skips the compilation (tens of seconds). The weights are baked in: build a
    new AOTStep after changing them. Inputs must be row-major (see :func:`compiled`).

    Loading a package can crash the process outright on some installations (a segmentation
    fault in ``aoti_load_package`` was seen on a CUDA build of torch on a GPU host), which no
    ``except`` catches. So with ``isolate`` (the default) a child process compiles, loads and
    runs the package first and marks it verified (``<package>.ok``); a failure there raises
    RuntimeError here, and the engine falls back to ``torch.compile``.
    """

    def __init__(self, model: SignalModel, batch_size: int = 1, *, isolate: bool = True):
        self.model, self.batch_size = model, batch_size
        with torch.inference_mode():
            self.template = model.init_state(batch_size)
        self._build = state_builder(self.template)
        path = cache_dir("aoti") / f"step_{self._key(batch_size)}.pt2"
        verified = path.with_suffix(".ok")
        if isolate and not verified.is_file():
            _compile_in_child(model, batch_size, path)
        elif not path.is_file():
            self._compile(path)
        self.path = path
        self.runner = torch._inductor.aoti_load_package(str(path), run_single_threaded=True)

    def _compile(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = torch.zeros(self.batch_size, self.model.samples_per_frame, self.model.in_channels)
        flat = tuple(t.clone() for t in self.template.tensors())
        module = FlatStep(self.model, self.template).eval()
        with torch.no_grad():
            exported = torch.export.export(module, (frame, *flat), strict=False)
        # write next to the target and rename: a concurrent process never loads half a file
        fd, tmp = tempfile.mkstemp(suffix=".pt2", dir=path.parent)
        os.close(fd)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_COMPLEX_FALLBACK)
            torch._inductor.aoti_compile_and_package(exported, package_path=tmp)
        os.replace(tmp, path)
        log.info("compiled the streaming step ahead of time: %s", path)

    def _key(self, batch_size: int) -> str:
        h = hashlib.sha256()
        h.update(repr((self.model.config.to_dict(), batch_size, torch.__version__)).encode())
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:24]

    def flat(self, state: SignalModelState) -> list[Tensor]:
        return list(state.tensors())

    def state(self, flat: list[Tensor]) -> SignalModelState:
        return self._build(flat)

    def step_flat(self, frame: Tensor, flat: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        out = self.runner(frame, *flat)
        return out[0], list(out[1:])

    def __call__(self, frame: Tensor, state: SignalModelState) -> tuple[Tensor, SignalModelState]:
        y, flat = self.step_flat(frame, self.flat(state))
        return y, self.state(flat)


def _compile_in_child(model: SignalModel, batch_size: int, path: Path, timeout: float = 900.0) -> None:
    """Compile, load and check the package in a child process; raise RuntimeError if that fails or crashes."""
    import subprocess
    import sys

    from ssm_signal.bundle import save_bundle

    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(model, Path(tmp) / "model", name="aot", version="0")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                   **{ENV_CACHE_DIR: str(cache_dir())})
        try:
            done = subprocess.run([sys.executable, "-m", "ssm_signal.streaming.step", str(Path(tmp) / "model"),
                                   str(batch_size), str(path)], env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"ahead-of-time compilation took over {timeout:.0f} s") from e
    if done.returncode != 0 or not path.with_suffix(".ok").is_file():
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the ahead-of-time step failed in a child process (exit {done.returncode}): {tail}")


def _child_main(bundle_dir: str, batch_size: str, path: str) -> None:
    """In the child: compile (if needed), load, run one frame against the eager step, mark verified."""
    from ssm_signal.bundle import load_bundle

    torch.set_num_threads(1)
    model = load_bundle(bundle_dir).model
    step = AOTStep(model, int(batch_size), isolate=False)
    if str(step.path) != path:
        raise SystemExit(f"cache key mismatch: {step.path} != {path}")
    frame = 0.1 * torch.randn(int(batch_size), model.samples_per_frame, model.in_channels)
    with torch.inference_mode():
        state = model.init_state(int(batch_size))
        y, _ = step(frame, state)
        ref, _ = model.step(frame, state)
    if not torch.allclose(y, ref, rtol=1e-4, atol=1e-4):
        raise SystemExit(f"the compiled step disagrees with the eager one (max diff {float((y - ref).abs().max())})")
    Path(path).with_suffix(".ok").write_text("verified\n")


def aot_step(model: SignalModel, batch_size: int = 1) -> AOTStep:
    """The model's :class:`AOTStep` for ``batch_size`` (built once per process, kept on the model)."""
    table = model.__dict__.setdefault("_streaming_aot", {})
    if batch_size not in table:
        table[batch_size] = AOTStep(model, batch_size)
    return table[batch_size]


if __name__ == "__main__":  # the isolated compilation (see AOTStep)
    import sys

    _child_main(*sys.argv[1:4])
