"""FrameLoop (the frame graph stepped with IOBinding, its state in two bound buffer sets) equals its
reference twin, the GraphRunner call of the same graph, frame for frame: output and state, whatever
state it is given (its own latest, a foreign one, one step stale); and what it returns cannot be changed
behind its back."""

from __future__ import annotations

import numpy as np
import pytest

from ssm_signal.runtime import OnnxModel


def frames(model: OnnxModel, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal((1, model.samples_per_frame, model.in_channels))).astype(np.float32)
            for _ in range(n)]


def same(a: dict, b) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["mamba2", "sensor"])
def test_frame_loop_equals_the_graph_runner(exported, name):
    _, out = exported(name)
    model = OnnxModel(out)
    loop = model.frame_loop()
    ref = lop = model.init_model_state(1)
    history = []
    for i, x in enumerate(frames(model, 40)):
        if i == 15:  # a state from elsewhere (a restored snapshot): copied in
            lop = {k: v.copy() for k, v in ref.items()}
        y_ref, ref = model.frame(x, ref)
        y, lop = loop(x, lop)
        assert np.array_equal(y, y_ref) and same(ref, lop)
        history.append((x, {k: v.copy() for k, v in ref.items()}))
    # the state one step stale (still in the set the last step read) is read before anything is written
    (x, _), (_, before) = history[-1], history[-2]
    stale = loop._views[loop._current ^ 1]
    assert same(before, stale)
    y, lop = loop(x, stale)
    y_ref, ref = model.frame(x, before)
    assert np.array_equal(y, y_ref) and same(ref, lop)


def test_what_the_loop_returns_is_read_only(exported):
    _, out = exported("mamba2")
    model = OnnxModel(out)
    loop = model.frame_loop()
    y, state = loop(frames(model, 1)[0], model.init_model_state(1))
    y[...] = 0  # the output is the caller's own copy
    name = next(iter(state))
    with pytest.raises(ValueError, match="read-only"):
        state[name][...] = 1
    with pytest.raises(TypeError):
        state[name] = np.zeros(1)
    with pytest.raises(ValueError, match="a frame of shape"):
        loop(np.zeros((1, model.samples_per_frame + 1, model.in_channels), np.float32), state)
    bad = dict(state) | {name: np.zeros((1, 3), np.float32)}
    with pytest.raises(ValueError, match=f"state {name} of shape"):
        loop(frames(model, 1)[0], bad)
