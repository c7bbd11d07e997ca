"""StreamPool: per stream it equals predict; streams join, leave and reset independently; one
batched model call per tick; the compiled and CUDA-graph runners equal the eager twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssm_signal import load_bundle, save_bundle
from ssm_signal.streaming import StreamConfig, StreamingSession, StreamPool
from ssm_signal.streaming.runners import _TICKS, CudaGraphRunner, EagerRunner
from tests.streaming.conftest import kws_model, speechlike


def feed(pool: StreamPool, plan: dict[int, tuple[np.ndarray, int]], rng, max_chunk: int = 3000,
         out: dict[int, list[np.ndarray]] | None = None) -> dict[int, list[np.ndarray]]:
    """Push every stream's signal in random chunks, ticking in between; flush; collect frame scores."""
    out = out if out is not None else {sid: [] for sid in plan}
    pos = dict.fromkeys(plan, 0)
    while any(pos[s] < len(plan[s][0]) for s in plan):
        for sid, (x, rate) in plan.items():
            if pos[sid] < len(x):
                n = int(rng.integers(1, max_chunk))
                pool.push(sid, x[pos[sid]:pos[sid] + n], rate)
                pos[sid] += n
        for sid, u in pool.run().items():
            out.setdefault(sid, []).append(u.frame_scores)
    for sid in plan:
        pool.flush(sid)
    for sid, u in pool.run().items():
        assert u.final
        out.setdefault(sid, []).append(u.frame_scores)
    return out


def test_streams_equal_predict_with_joins_resets_and_growth(kws_bundle, seed):
    rng = np.random.default_rng(seed % 2**32)
    pool = StreamPool(kws_bundle, slots=2, runner="eager")
    signals = {r: speechlike(1.5, r, i) for i, r in enumerate((16000, 44100, 8000, 48000))}
    a, b = pool.add(), pool.add()
    # a first, alone for a while; then c joins (the pool grows to 4 slots); b is reset midway
    got = feed(pool, {a: (signals[16000], 16000)}, rng)
    c = pool.add()
    assert pool.slots == 4
    pool.push(b, signals[8000][:5000], 8000)
    pool.run()
    pool.reset(b)
    got.update(feed(pool, {b: (signals[44100], 44100), c: (signals[48000], 48000)}, rng))
    for sid, rate in ((a, 16000), (b, 44100), (c, 48000)):
        ref = kws_bundle.predict(signals[rate], rate).frame_scores
        mine = np.concatenate(got[sid])
        assert mine.shape == ref.shape
        assert np.abs(mine - ref).max() <= 1e-4
    pool.remove(a)
    with pytest.raises(KeyError, match="no stream"):
        pool.push(a, signals[16000], 16000)
    d = pool.add()  # reuses a's slot, from a zero state
    assert pool.slots == 4
    got = feed(pool, {d: (signals[8000], 8000)}, rng)
    assert np.abs(np.concatenate(got[d]) - kws_bundle.predict(signals[8000], 8000).frame_scores).max() <= 1e-4


def test_one_batched_call_per_tick(kws_bundle, monkeypatch):
    pool = StreamPool(kws_bundle, slots=4, runner="eager")
    ids = [pool.add() for _ in range(3)]
    calls = []
    step = pool.runner.step

    def counting(frames, active):
        calls.append((tuple(frames.shape), int(active.sum())))
        return step(frames, active)

    monkeypatch.setattr(pool.runner, "step", counting)
    for k, sid in enumerate(ids):  # 3, 5 and 7 frames queued
        pool.push(sid, np.zeros(160 * (3 + 2 * k), np.float32), 16000)
    assert [pool.pending_frames(s) for s in ids] == [3, 5, 7]
    ups = pool.run()
    assert calls == [((4, 160, 1), 3)] * 3 + [((4, 160, 1), 2)] * 2 + [((4, 160, 1), 1)] * 2
    assert [ups[s].n_frames for s in ids] == [3, 5, 7]
    assert [ups[s].first_frame for s in ids] == [0, 0, 0]
    assert pool.tick() == {}


def test_bad_input_on_one_stream_leaves_the_others(kws_bundle):
    pool = StreamPool(kws_bundle, slots=2, runner="eager")
    a, b = pool.add(), pool.add()
    x = speechlike(1.0, 16000)
    pool.push(a, x, 16000)
    for samples, rate in ((np.full(10, np.nan), 16000), (x, 0), (np.zeros((10, 2, 2)), 16000)):
        with pytest.raises(ValueError):
            pool.push(b, samples, rate)
    pool.push(b, x[:100], 16000)
    with pytest.raises(ValueError, match="changed from 16000"):
        pool.push(b, x, 8000)
    ups = pool.run()
    assert ups[a].n_frames == 100 and b not in ups  # b has less than a frame queued
    ref = kws_bundle.predict(x, 16000).frame_scores
    assert np.abs(ups[a].frame_scores - ref[:100]).max() <= 1e-4
    pool.flush(a)
    with pytest.raises(ValueError, match="flushed"):
        pool.push(a, x, 16000)


def test_pool_events_per_stream(tmp_path):
    m = kws_model()
    with torch.no_grad():
        m.head.proj.weight.zero_()
        m.head.proj.bias.copy_(torch.tensor([0.0, 8.0, 0.0, 0.0]))  # always "no"
    b = load_bundle(save_bundle(m, tmp_path / "no"))
    pool = StreamPool(b, slots=2, runner="eager")
    s1, s2 = pool.add(), pool.add()
    pool.push(s1, np.zeros(16000), 16000)
    pool.push(s2, np.zeros(8000), 16000)
    ups = pool.run()
    assert [(e.label, e.frame) for e in ups[s1].events] == [("no", 0)]  # held all along: one event
    assert [(e.label, e.frame) for e in ups[s2].events] == [("no", 0)]
    pool.push(s1, np.zeros(1600), 16000)
    assert pool.run()[s1].events == []  # still held: the stream's detector state carried over
    pool.reset(s1)
    pool.push(s1, np.zeros(1600), 16000)
    assert [e.frame for e in pool.run()[s1].events] == [0]  # a fresh stream fires again


def test_a_stream_moves_between_pool_and_session(kws_bundle):
    """The pool holds the state a session holds: a pool stream's snapshot resumes in a session and a
    session's in a pool, and the frames stitched across both moves equal predict's; ``state_of``
    equals the state of a session fed the same samples. Another stream at another rate shares the
    pool (resampler rows of another width)."""
    rate, eager = 44100, StreamConfig(compile=False)
    x = speechlike(1.5, rate, 3)
    pool = StreamPool(kws_bundle, slots=2, runner="eager")
    other, a = pool.add(), pool.add()
    pool.push(other, speechlike(0.3, 8000), 8000)
    cut1, cut2 = 20000, 45000
    pool.push(a, x[:cut1], rate)
    with pytest.raises(ValueError, match="queued"):
        pool.snapshot(a)
    got = [pool.run()[a].frame_scores]
    twin = StreamingSession(kws_bundle, config=eager)
    twin.push(x[:cut1], rate)
    mine, ref = pool.state_of(a).state_dict(), twin.state.state_dict()
    assert mine.keys() == ref.keys()
    for k in ref:
        assert mine[k].dtype == ref[k].dtype and torch.allclose(mine[k], ref[k], atol=1e-5), k
    session = StreamingSession.restore(kws_bundle, pool.snapshot(a), config=eager)
    got.append(session.push(x[cut1:cut2], rate).frame_scores)
    b = pool.add(snapshot=session.snapshot())
    pool.push(b, x[cut2:], rate)
    pool.flush(b)
    got.append(pool.run()[b].frame_scores)
    assert np.abs(np.concatenate(got) - kws_bundle.predict(x, rate).frame_scores).max() <= 1e-4


def test_compiled_runner_equals_eager(kws_bundle, seed):
    rng = np.random.default_rng(seed % 2**32)
    signals = [(speechlike(0.6, 16000, 1), 16000), (speechlike(0.6, 48000, 2), 48000)]
    results = []
    for runner in ("eager", "compiled"):
        pool = StreamPool(kws_bundle, slots=2, runner=runner)
        ids = [pool.add(), pool.add()]
        got = feed(pool, dict(zip(ids, signals, strict=True)), np.random.default_rng(rng.integers(1 << 30)))
        results.append([np.concatenate(got[i]) for i in ids])
    for e, c in zip(*results, strict=True):
        assert np.abs(e - c).max() <= 1e-5


@pytest.mark.parametrize("fuse", [False, True], ids=["eager", "compiled"])
@torch.inference_mode()
def test_in_place_tick_equals_eager_runner(fuse, seed):
    """The CUDA-graph runner's tick bodies (tick_in_place, all and masked) on the CPU, on static
    tensors as the runner holds them, eager and compiled by Inductor as the runner compiles them,
    against the functional EagerRunner: random masks, every third tick all active. The default
    keyword architecture (log-mel, 4 Mamba-2 layers), built small."""
    m = kws_model(("mamba2",) * 4)
    S, dev = 6, torch.device("cpu")
    eager = EagerRunner(m, S, dev)
    state = m.init_state(S)
    frames, active = torch.zeros(S, 160, 1), torch.zeros(S, dtype=torch.bool)
    bodies = {k: torch.compile(f, dynamic=False) if fuse else f for k, f in _TICKS.items()}
    gen = torch.Generator().manual_seed(seed)
    tol = dict(atol=1e-5, rtol=1e-5) if fuse else dict(atol=0.0, rtol=0.0)
    for t in range(9):
        f = 0.1 * torch.randn(S, 160, 1, generator=gen)
        a = torch.rand(S, generator=gen) < 0.6
        a[t % S], a[(t + 1) % S] = True, t % 3 != 0
        before = state.clone()
        frames.copy_(f)
        active.copy_(a)
        y = bodies[not bool(a.all())](m, frames, active, state)
        y_e = eager.step(f, a)
        assert torch.allclose(y[a], y_e[a], **tol), t
        for new, old in zip(state.tensors(), before.tensors(), strict=True):
            assert torch.equal(new[~a], old[~a]), t
    for x, ref in zip(state.tensors(), eager.state.tensors(), strict=True):
        assert torch.allclose(x, ref, **tol)


def test_runner_choice_and_errors(kws_bundle):
    assert StreamPool(kws_bundle, runner="eager").runner_kind == "eager"
    assert StreamPool(kws_bundle, config=StreamConfig(compile=False)).runner_kind == "eager"
    with pytest.raises(ValueError, match="runner"):
        StreamPool(kws_bundle, runner="magic")
    with pytest.raises(ValueError, match="slots"):
        StreamPool(kws_bundle, slots=0)
    with pytest.raises(ValueError, match="CUDA"):
        CudaGraphRunner(kws_bundle.model, 2, torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "eager_ops"])
def test_cuda_graph_runner_equals_eager_twin(tmp_path, seed, fuse):
    """The captured steps over fixed slots against the eager step on the same GPU: random frames,
    random active masks (the masked graph) and every third tick all active (the unmasked graph),
    resets of single slots."""
    dev = torch.device("cuda")
    m = kws_model(("mamba2", "s4d", "attention")).to(dev)
    g = CudaGraphRunner(m, 8, dev, fuse=fuse)
    e = EagerRunner(m, 8, dev)
    gen = torch.Generator().manual_seed(seed)
    for t in range(40):
        frames = 0.1 * torch.randn(8, 160, 1, generator=gen)
        active = torch.rand(8, generator=gen) < 0.7
        if t % 3 == 0:
            active[:] = True
        yg, ye = g.step(frames, active), e.step(frames, active)
        assert torch.allclose(yg[active], ye[active], atol=1e-4, rtol=1e-4), t
        if t % 9 == 4:
            g.reset(t % 8)
            e.reset(t % 8)
    for a, b in zip(g.state.tensors(), e.state.tensors(), strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
def test_cuda_graph_runner_takes_pcm16_frames(seed):
    """int16 PCM frames, scaled inside the graph, give what the float runner gives for the same
    samples as floats; a frame of the wrong dtype is refused."""
    from ssm_signal.bundle import pcm_to_float

    dev = torch.device("cuda")
    m = kws_model().to(dev)
    f32, i16 = CudaGraphRunner(m, 16, dev), CudaGraphRunner(m, 16, dev, pcm16=True)
    gen = torch.Generator().manual_seed(seed)
    for t in range(12):
        pcm = (3000 * torch.randn(16, 160, 1, generator=gen)).clamp(-32768, 32767).to(torch.int16)
        active = torch.rand(16, generator=gen) < (1.0 if t % 2 else 0.6)
        a, b = f32.step(pcm_to_float(pcm), active).clone(), i16.step(pcm, active)
        assert torch.allclose(a[active], b[active], atol=1e-5, rtol=1e-5), t
    with pytest.raises(ValueError, match="int16 frames"):
        i16.step(pcm_to_float(pcm), active)


@pytest.mark.gpu
def test_cuda_pool_equals_predict(tmp_path, seed):
    bundle = load_bundle(save_bundle(kws_model(), tmp_path / "b"), device="cuda")
    pool = StreamPool(bundle, slots=4)
    assert pool.runner_kind == "cuda_graph"
    ids = [pool.add() for _ in range(3)]
    plan = {sid: (speechlike(1.0, rate, i), rate) for i, (sid, rate) in enumerate(zip(ids, (16000, 44100, 8000),
                                                                                      strict=True))}
    got = feed(pool, plan, np.random.default_rng(seed % 2**32))
    for sid, (x, rate) in plan.items():
        ref = bundle.predict(x, rate).frame_scores
        assert np.abs(np.concatenate(got[sid]) - ref).max() <= 1e-4
    with pytest.raises(ValueError, match="fixed"):
        for _ in range(2):
            pool.add()


@pytest.mark.gpu
@torch.inference_mode()
def test_cuda_graph_default_model_at_65536_slots(seed):
    """The serving shape: configs/kws_logmel.yaml's network (the log-mel keyword model) at 65,536 slots. The captured in-place
    ticks (masked and all) against the eager functional runner on the same GPU; idle slots' state
    stays bit for bit."""
    from pathlib import Path

    import yaml

    from ssm_signal.models import ModelConfig, SignalModel

    net = yaml.safe_load((Path(__file__).parents[2] / "configs/kws_logmel.yaml").read_text())["model"]["network"]
    dev = torch.device("cuda")
    m = SignalModel(ModelConfig.from_dict(net)).eval().to(dev)
    S = 65536
    g, e = CudaGraphRunner(m, S, dev), EagerRunner(m, S, dev)
    gen = torch.Generator().manual_seed(seed)
    for t in range(4):
        frames = (0.1 * torch.randn(S, 160, 1, generator=gen)).pin_memory()
        active = torch.rand(S, generator=gen) < (1.0 if t % 2 else 0.7)
        before = [x[~active.to(dev)].clone() for x in g.state.tensors()]
        yg, ye = g.step(frames, active).clone(), e.step(frames, active)
        assert torch.allclose(yg[active], ye[active], atol=1e-4, rtol=1e-4), t
        for x, b in zip(g.state.tensors(), before, strict=True):
            assert torch.equal(x[~active.to(dev)], b), t
    for a, b in zip(g.state.tensors(), e.state.tensors(), strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
