"""MLflow wiring: a real tiny fit into a temporary SQLite store, read back with MlflowClient; the registry
and ``models:/`` / ``runs:/`` loading through ``load_bundle``; the store switch; clear errors."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import mlflow
import mlflow.artifacts
import numpy as np
import pytest
import torch

from pipelines import tracking
from pipelines.score import ScoreConfig, score
from pipelines.tracking import (
    default_tracking_uri,
    experiment_id,
    list_registered_bundles,
    log_bundle,
    log_figures,
    register_bundle,
    resolve_uri,
    tracking_client,
)
from pipelines.tracking_lightning import make_mlflow_logger
from pipelines.train import run_fit
from ssm_signal import load_bundle
from ssm_signal.bundle import BundleError
from tests.pipelines.test_fit import CONFIGS, write_ts

PNG = b"\x89PNG\r\n\x1a\n"
NAME = "tiny_uea"
ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SSM_SIGNAL_MLFLOW_ARTIFACT_ROOT", "SSM_SIGNAL_CACHE_DIR")


def _isolate(mp: pytest.MonkeyPatch, root: Path) -> str:
    """Point every store and cache at ``root``; returns the tracking URI."""
    for k in ENV:
        mp.delenv(k, raising=False)
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("SSM_SIGNAL_CACHE_DIR", str(root / "cache"))
    mp.chdir(root)  # anything that fell back to the cwd would land here, not in the repository
    return uri


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One real fit (4 steps, 2 epochs, validation each epoch) with the default MLflow logger."""
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        uri = _isolate(mp, root)
        # creating an MLflow database runs its schema migrations (seconds): do it once, copy it for fresh stores
        tracking_client(uri).search_experiments()
        shutil.copy(root / "store" / "mlflow.db", root / "empty.db")
        rng = np.random.default_rng(0)
        (root / "Tiny").mkdir()
        write_ts(root / "Tiny" / "Tiny_TRAIN.ts", 12, rng)
        write_ts(root / "Tiny" / "Tiny_TEST.ts", 6, rng)
        summary = run_fit([
            "--config", str(CONFIGS / "uea_basicmotions.yaml"),
            "--model.network.backbone.d_model", "16", "--model.network.backbone.layers", "[mamba]",
            "--model.lr", "0.002",
            "--trainer.max_steps", "4", "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
            "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--data.init_args.root", str(root), "--data.init_args.name", "Tiny",
            "--output.bundle_dir", str(root / "bundle"), "--output.name", NAME, "--output.experiment", "tiny-exp",
            "--trainer.default_root_dir", str(root / "runs")])
        client = tracking_client(uri)
        exp = client.get_experiment_by_name("tiny-exp")
        (run,) = client.search_runs([exp.experiment_id])
        yield {"root": root, "uri": uri, "client": client, "exp": exp, "run": run, "summary": summary, "mp": mp}
        mlflow.set_tracking_uri(None)  # Lightning's logger sets MLflow's process-wide URI; drop it


def fresh_store(fitted, folder: Path) -> str:
    """A new, empty SQLite store in ``folder`` (a copy of the migrated empty database); returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(fitted["root"] / "empty.db", folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def store(fitted, monkeypatch):
    """The fitted store as the environment's store for one test (the module fixture's patch may be undone)."""
    _isolate(monkeypatch, fitted["root"])
    return fitted


def test_store_is_the_temporary_sqlite(store):
    root = store["root"]
    assert (root / "store" / "mlflow.db").is_file()
    assert store["exp"].artifact_location == (root / "store" / "artifacts" / "tiny-exp").as_uri()
    assert store["run"].info.artifact_uri.startswith(store["exp"].artifact_location + "/")
    assert store["run"].info.status == "FINISHED"
    assert not (root / "mlruns").exists()  # nothing fell back to the cwd default


def test_run_has_cli_hyperparameters(store):
    params = store["run"].data.params
    # the module's hyperparameters, logged by Lightning from save_hyperparameters
    assert params["lr"] == "0.002" and params["network/backbone/d_model"] == "16"
    assert params["network/backbone/layers"] == "['mamba']"
    # the rest of the LightningCLI config, logged by MLflowConfigCallback
    assert params["data/init_args/name"] == "Tiny" and params["trainer/max_steps"] == "4"
    assert params["output/name"] == NAME
    client, rid = store["client"], store["run"].info.run_id
    text = Path(client.download_artifacts(rid, "config.yaml", str(store["root"] / "dl"))).read_text()
    assert "name: Tiny" in text and "max_steps: 4" in text
    assert (store["root"] / "runs" / "config.yaml").read_text() == text  # the local copy beside the checkpoints


def test_run_has_per_epoch_metrics(store):
    client, rid = store["client"], store["run"].info.run_id
    val = client.get_metric_history(rid, "val_loss")
    acc = client.get_metric_history(rid, "val_acc")
    assert len(val) == 2 and len(acc) == 2  # one per validation epoch
    assert sorted(m.step for m in val) == sorted(m.step for m in acc) and len({m.step for m in val}) == 2
    assert len(client.get_metric_history(rid, "train_loss")) == 4  # one per step (log_every_n_steps 1)
    metrics = store["run"].data.metrics
    assert metrics["test_acc"] == pytest.approx(store["summary"]["metrics"]["test_acc"])
    assert len(client.get_metric_history(rid, "test_acc")) == 1  # not logged twice
    assert metrics["fit_seconds"] > 0


def test_run_has_bundle_and_figures(store):
    client, rid, root = store["client"], store["run"].info.run_id, store["root"]
    files = {f.path for f in client.list_artifacts(rid, "bundle")} | {f.path for f in client.list_artifacts(rid, "figures")}
    assert files == {"bundle/config.json", "bundle/model.safetensors", "figures/confusion_matrix.png",
                     "figures/learning_curves.png"}
    dl = Path(client.download_artifacts(rid, "", str(root / "dl_all")))
    for f in ("config.json", "model.safetensors"):
        assert (dl / "bundle" / f).read_bytes() == (root / "bundle" / f).read_bytes()
    for f in ("confusion_matrix.png", "learning_curves.png"):
        data = (dl / "figures" / f).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_registered_version_loads_as_the_saved_bundle(store):
    client, rid, root = store["client"], store["run"].info.run_id, store["root"]
    mv = client.get_model_version(NAME, "1")
    assert mv.run_id == rid and mv.source == store["run"].info.artifact_uri + "/bundle"
    assert mv.tags["ssm_signal.format"] == "ssm-signal-bundle" and mv.tags["ssm_signal.head"] == "classify"
    saved = load_bundle(root / "bundle")
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(1, 15, 2)), dtype=torch.float32)
    want = saved.frame_outputs(x)
    for uri in (f"models:/{NAME}/1", f"runs:/{rid}/bundle", f"runs:/{rid}"):
        b = load_bundle(uri)  # through the ssm_signal.uri_resolvers entry points
        assert b.name == NAME and b.version == saved.version and b.labels == ["a", "b"]
        assert torch.equal(b.frame_outputs(x), want)
        assert {k: torch.equal(v, saved.model.state_dict()[k]) for k, v in b.model.state_dict().items()} == {
            k: True for k in saved.model.state_dict()}


def test_new_versions_latest_aliases_and_listing(store):
    client, rid = store["client"], store["run"].info.run_id
    v2 = register_bundle(rid, NAME)
    assert v2 == "2"  # the fit registered version 1
    assert resolve_uri(f"models:/{NAME}/latest") == resolve_uri(f"models:/{NAME}/{v2}")
    client.set_registered_model_alias(NAME, "champion", "1")
    assert resolve_uri(f"models:/{NAME}@champion") == resolve_uri(f"models:/{NAME}/1")
    listed = [d for d in list_registered_bundles() if d["name"] == NAME]
    assert [d["version"] for d in listed][:2] == [v2, str(int(v2) - 1)]  # newest first
    first = next(d for d in listed if d["version"] == "1")
    assert first["uri"] == f"models:/{NAME}/1" and first["run_id"] == rid and "champion" in first["aliases"]
    assert first["source"].endswith("/bundle") and first["creation_time"].endswith("+00:00")
    assert first["tags"]["test_acc"] == f"{store['summary']['metrics']['test_acc']:.6g}"


def test_remote_style_download_is_cached_once(store, monkeypatch):
    path = Path(resolve_uri(f"models:/{NAME}/1", force_download=True))
    key = hashlib.sha1(store["uri"].encode()).hexdigest()[:12]
    assert path == store["root"] / "cache" / "mlflow" / key / "models" / NAME / "1"
    assert (path / "model.safetensors").read_bytes() == (store["root"] / "bundle" / "model.safetensors").read_bytes()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".partial")]

    def no_download(*a, **k):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    assert Path(resolve_uri(f"models:/{NAME}/1", force_download=True)) == path
    # an interrupted download (no weights) is not taken for a cached bundle
    (path / "model.safetensors").unlink()
    with pytest.raises(AssertionError, match="downloaded again"):
        resolve_uri(f"models:/{NAME}/1", force_download=True)


@pytest.mark.parametrize(("uri", "message"), [
    ("models:/no_such_model/1", "no registered model 'no_such_model'"),
    (f"models:/{NAME}/99", f"model '{NAME}' has no version 99"),
    (f"models:/{NAME}/best", "version must be a number or 'latest'"),
    (f"models:/{NAME}@nobody", f"model '{NAME}' has no alias 'nobody'"),
    ("models:/a/b/c", "expected models:/NAME/VERSION"),
    ("runs:/0123456789abcdef0123456789abcdef/bundle", "no run '0123456789abcdef0123456789abcdef'"),
])
def test_unknown_models_fail_clearly(store, uri, message):
    with pytest.raises(BundleError, match=message.replace("(", r"\(")) as e:
        load_bundle(uri)
    assert isinstance(e.value, ValueError)
    if uri == "models:/no_such_model/1":
        assert NAME in str(e.value)  # the message lists what is registered


def test_run_artifact_that_is_not_a_bundle_fails_clearly(store):
    with pytest.raises(BundleError, match="not an ssm-signal bundle"):
        load_bundle(f"runs:/{store['run'].info.run_id}/figures")


def test_env_var_switches_the_store(store, tmp_path, monkeypatch):
    other = fresh_store(store, tmp_path / "other")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    assert default_tracking_uri() == other
    logger = make_mlflow_logger("switched", run_name="r")
    assert logger._tracking_uri == other
    assert logger._artifact_location == (tmp_path / "other" / "artifacts" / "switched").as_uri()
    logger.log_metrics({"m": 1.0}, step=0)  # the run is created in the store the variable names
    assert tracking_client(other).get_metric_history(logger.run_id, "m")[0].value == 1.0
    assert tracking_client(other).get_run(logger.run_id).info.artifact_uri.startswith(logger._artifact_location)
    with pytest.raises(BundleError, match=f"no registered model '{NAME}'"):
        load_bundle(f"models:/{NAME}/1")  # registered in the first store only
    assert list_registered_bundles() == []
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert tracking.default_artifact_root() == (tmp_path / "mlruns" / "artifacts").as_uri()
    # no store here yet: a clear error and an empty list, and no empty database left behind
    with pytest.raises(BundleError, match="no MLflow store at"):
        load_bundle(f"models:/{NAME}/1")
    assert list_registered_bundles() == [] and not (tmp_path / "mlruns").exists()


def test_scoring_run_is_tracked_in_the_same_store(store, tmp_path):
    data = tmp_path / "inputs"
    data.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        np.save(data / f"s{i}.npy", rng.normal(size=(12 + i, 2)).astype(np.float32))
    out = tmp_path / "scores.parquet"
    summary = score(ScoreConfig(model=f"models:/{NAME}/1", input=str(data), output=str(out), num_workers=0,
                                accelerator="cpu"))
    assert summary["ok"] == 3
    client = store["client"]
    exp = client.get_experiment_by_name("scoring")
    assert exp.artifact_location == (store["root"] / "store" / "artifacts" / "scoring").as_uri()
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["model_uri"] == f"models:/{NAME}/1" and run.data.metrics["files"] == 3
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["scores.summary.json"]


def test_artifact_root_override_and_missing_pieces(fitted, tmp_path, monkeypatch):
    _isolate(monkeypatch, tmp_path)
    uri = fresh_store(fitted, tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SSM_SIGNAL_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "elsewhere"))
    client = tracking_client(uri)
    eid = experiment_id("my exp/1")
    assert eid == experiment_id("my exp/1")  # found, not created twice
    assert client.get_experiment(eid).artifact_location == (tmp_path / "elsewhere" / "my_exp_1").as_uri()
    rid = client.create_run(eid).info.run_id
    # an anomaly model: no confusion matrix; a run without validation: no curves
    assert log_figures(rid, uri, confusion=None, labels=None, curves={}) == []
    assert log_figures(rid, uri, curves={"val_loss": [1.0, 0.5], "epoch": [10, 20]}) == ["figures/learning_curves.png"]
    assert log_figures(rid, uri, confusion=np.array([[3, 1], [0, 4]])) == ["figures/confusion_matrix.png"]
    assert {f.path for f in client.list_artifacts(rid, "figures")} == {"figures/learning_curves.png",
                                                                       "figures/confusion_matrix.png"}
    with pytest.raises(ValueError, match="3 labels for a 2x2"):
        log_figures(rid, uri, confusion=np.eye(2), labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="square"):
        log_figures(rid, uri, confusion=np.ones((2, 3)))
    with pytest.raises(ValueError, match="not a bundle"):
        log_bundle(rid, tmp_path, uri)
    with pytest.raises(ValueError, match="call log_bundle first"):
        register_bundle(rid, "nothing_here", uri)
