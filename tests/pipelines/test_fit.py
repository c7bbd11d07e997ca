"""A few-step fit on CPU for each config family, ending in a bundle that loads and predicts."""

from __future__ import annotations

import enum
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipelines.train import dump_config_yaml, run_fit
from ssm_signal import load_bundle
from ssm_signal.data.keywords import KeywordSetConfig, generate_keyword_set
from ssm_signal.data.speech_commands import SpeechCommands
from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table
from tests.helpers import require_tool

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FAST = ["--trainer.logger", "false", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def write_ts(path: Path, n: int, rng, shift: float = 0.0) -> list[tuple[np.ndarray, str]]:
    """A two-class .ts file of ``n`` series (noise; class a's mean moved by ``shift``, so that a shift of a
    few standard deviations makes the classes separable). Returns the series (L, 2) as written, with labels."""
    lines = ["@problemName Tiny", "@timeStamps false", "@missing false", "@univariate false", "@dimensions 2",
             "@equalLength false", "@classLabel true a b", "@data"]
    series = []
    for i in range(n):
        L = int(rng.integers(8, 20))
        label = "a" if i % 2 else "b"
        x = np.round(rng.normal(size=(L, 2)) + (shift if label == "a" else 0.0), 3)
        dims = [",".join(f"{v:.3f}" for v in x[:, c]) for c in range(2)]
        lines.append(":".join(dims) + f":{label}")
        series.append((x.astype(np.float32), label))
    path.write_text("\n".join(lines) + "\n")
    return series


def bundle_accuracy(bundle_dir: Path, series: list[tuple[np.ndarray, str]], rate: int = 1) -> float:
    """Accuracy of a bundle's clip labels, one series at a time in this process: the reference a logged
    ``test_acc`` must equal however the split was batched or shared between processes."""
    b = load_bundle(bundle_dir)
    return float(np.mean([b.predict(x, rate).label == label for x, label in series]))


# enough steps at a high enough rate that separable series are learnt
LEARN = ["--trainer.max_steps", "-1", "--trainer.max_epochs", "8", "--model.warmup_steps", "1", "--model.lr", "0.01",
         "--data.init_args.batch_size", "4"]


def test_fit_uea_family(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "Tiny").mkdir()
    write_ts(tmp_path / "Tiny" / "Tiny_TRAIN.ts", 12, rng, shift=3.0)
    test = write_ts(tmp_path / "Tiny" / "Tiny_TEST.ts", 6, rng, shift=3.0)
    out = run_fit(["--config", str(CONFIGS / "uea_basicmotions.yaml"), *FAST, *LEARN,
                   "--data.init_args.root", str(tmp_path), "--data.init_args.name", "Tiny",
                   "--output.bundle_dir", str(tmp_path / "bundle"),
                   "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert out["metrics"]["test_acc"] == 1.0  # classes three standard deviations apart
    assert abs(out["metrics"]["test_acc"] - bundle_accuracy(tmp_path / "bundle", test)) < 1e-6
    b = load_bundle(tmp_path / "bundle")
    assert b.labels == ["a", "b"] and b.in_channels == 2
    p = b.predict(rng.normal(size=(15, 2)).astype(np.float32), 1)
    assert p.label in ("a", "b") and p.frame_scores.shape == (15, 2)


def small_anomaly_table(path: Path) -> Path:
    """A sensor table of 3 normal, 1 val and 2 test series of 600 steps, two spikes or level shifts in each
    anomalous one: what a forecaster fitted for three steps already forecasts worse than normal frames. Train
    on it with windows of 128 (longer than the config's longest horizon)."""
    return make_sensor_anomaly_table(path, n_train=3, n_val=1, n_test=2, length=600, anomalies_per_series=2,
                                     kinds=("spike", "shift"), seed=1)


def test_fit_sensor_anomaly_family(tmp_path):
    table = small_anomaly_table(tmp_path / "t.parquet")
    out = run_fit(["--config", str(CONFIGS / "sensor_anomaly.yaml"), *FAST,
                   "--data.init_args.path", str(table), "--data.init_args.window", "128",
                   "--output.bundle_dir", str(tmp_path / "bundle"),
                   "--trainer.default_root_dir", str(tmp_path / "runs")])
    # the planted anomalies are forecast worse than normal frames from the first steps on (0.73 here);
    # 0.5 would be a scorer that cannot tell them apart
    assert out["metrics"]["test_auroc"] > 0.65
    b = load_bundle(tmp_path / "bundle")
    assert float(b.model.head.err_var.min()) > 0 and not np.allclose(b.model.head.err_var.numpy(), 1.0)
    p = b.predict(np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32), 1)
    assert p.label in ("anomaly", "normal") and p.frame_scores.shape == (100, 1)


def test_fit_sensor_anomaly_memory_keeps_the_normal_series_states(tmp_path):
    """With head.memory the bundle keeps hidden states of the normal training series, each streamed whole from a
    fresh state (every distinct state kept: fewer than the memory), and the scale their nearest-other distance."""
    from ssm_signal.data.sensor_tables import table_series
    from ssm_signal.models.heads import memory_bank

    table = small_anomaly_table(tmp_path / "t.parquet")
    run_fit(["--config", str(CONFIGS / "sensor_anomaly.yaml"), *FAST, "--data.init_args.path", str(table),
             "--data.init_args.window", "128", "--model.network.head.memory", "4000", "--output.test", "false",
             "--output.bundle_dir", str(tmp_path / "bundle"), "--trainer.default_root_dir", str(tmp_path / "runs")])
    m = load_bundle(tmp_path / "bundle").model
    with torch.no_grad():
        states = torch.cat([m.forward_parts(torch.tensor(s.x)[None]).hidden[0, m.head.first_scored:]
                            for s in table_series(table, splits=["train"])])
    bank, scale = memory_bank(states, 4000)
    assert len(states) < 4000 and m.head.bank.shape == (4000, m.head.bank.shape[1])
    assert torch.allclose(m.head.bank, bank, atol=1e-5) and float(m.head.bank_scale) == pytest.approx(float(scale),
                                                                                                     rel=1e-4)
    assert float(scale) > 0


def test_fit_keyword_family(tmp_path, local_speech_encoder):
    """The default job's path end to end on a tiny generated set: all twenty core words, a few voices (the speech
    encoder's weights from a local folder)."""
    require_tool("espeak-ng")
    root = generate_keyword_set(tmp_path / "kw", seed=5, workers=1, config=KeywordSetConfig(
        n_speakers=10, other_per_speaker=1, validation_percent=30, testing_percent=30))
    out = run_fit(["--config", str(CONFIGS / "kws_default.yaml"), *FAST,
                   "--data.init_args.root", str(root), "--data.init_args.generate", "false",
                   "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
                   "--output.bundle_dir", str(tmp_path / "bundle"),
                   "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.limit_test_batches", "1.0"])
    # three steps teach nothing yet: what is checked is that the logged figure is the bundle's accuracy on the
    # whole test split
    test = SpeechCommands(root, subset="testing")
    clips = [(x.numpy(), test.labels[y]) for x, y in (test[i] for i in range(len(test)))]
    assert abs(out["metrics"]["test_acc"] - bundle_accuracy(tmp_path / "bundle", clips, rate=16000)) < 1e-6
    b = load_bundle(tmp_path / "bundle")
    assert len(b.labels) == 22 and b.labels[-2:] == ["_silence_", "_unknown_"]
    # the frontend statistics were fitted on the training audio (not left at 0 / 1)
    assert not np.allclose(b.model.frontend.mean.numpy(), 0.0) and not np.allclose(b.model.frontend.std.numpy(), 1.0)
    p = b.predict(np.random.default_rng(0).normal(scale=0.1, size=8000).astype(np.float32), 8000)
    assert p.label in b.labels and p.frame_scores.shape == (16000 // b.model.samples_per_frame, 22)


def test_resume_continues_from_the_last_checkpoint(tmp_path, monkeypatch):
    import torch

    from pipelines.task import SignalTask

    rng = np.random.default_rng(0)
    (tmp_path / "Tiny").mkdir()
    write_ts(tmp_path / "Tiny" / "Tiny_TRAIN.ts", 8, rng)
    write_ts(tmp_path / "Tiny" / "Tiny_TEST.ts", 4, rng)
    args = ["--config", str(CONFIGS / "uea_basicmotions.yaml"), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.check_val_every_n_epoch", "1",
            "--data.init_args.root", str(tmp_path), "--data.init_args.name", "Tiny", "--data.init_args.batch_size", "4",
            "--model.network.backbone.d_model", "16", "--output.test", "false",
            "--output.bundle_dir", str(tmp_path / "bundle"), "--trainer.default_root_dir", str(tmp_path / "runs")]
    run_fit([*args, "--trainer.max_epochs", "1"])
    last = tmp_path / "runs" / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=False)
    assert first["global_step"] == 2  # one epoch: 8 series / batch 4
    steps = []
    original = SignalTask.training_step
    monkeypatch.setattr(SignalTask, "training_step", lambda self, *a: steps.append(1) or original(self, *a))
    run_fit([*args, "--trainer.max_epochs", "3", "--resume", "true"])
    resumed = torch.load(last, map_location="cpu", weights_only=False)
    # two more epochs on top of the restored one (4 steps run now), not three from scratch (6)
    assert len(steps) == 4 and resumed["global_step"] == 6


def test_fit_takes_a_callback_whose_default_is_an_enum(tmp_path):
    """Lightning's Timer annotates ``interval`` as str with the default ``Interval.step``: the config keeps the
    member, and LightningCLI dumps the config (for the data module's hyperparameters, and as config.yaml)."""
    table = small_anomaly_table(tmp_path / "t.parquet")
    run_fit(["--config", str(CONFIGS / "sensor_anomaly.yaml"), *FAST, "--trainer.max_steps", "1",
             "--data.init_args.path", str(table), "--data.init_args.window", "128",
             "--trainer.callbacks+=Timer", "--trainer.callbacks.duration", "00:00:10:00",
             "--output.bundle_dir", str(tmp_path / "bundle"), "--trainer.default_root_dir", str(tmp_path / "runs")])
    saved = yaml.safe_load((tmp_path / "runs" / "config.yaml").read_text())
    (timer,) = [c for c in saved["trainer"]["callbacks"] if c["class_path"].endswith(".Timer")]
    assert timer["init_args"] == {"duration": "00:00:10:00", "interval": "step", "verbose": True}
    assert (tmp_path / "bundle" / "config.json").is_file()


def test_config_yaml_writes_enum_members_as_their_values():
    class Colour(enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    assert yaml.safe_load(dump_config_yaml({"a": Colour.RED, "b": [Level.HIGH], "c": "x"})) == {
        "a": "red", "b": [3], "c": "x"}
