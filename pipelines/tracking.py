"""MLflow wiring: the tracking store, bundle artifacts, figures, the registry, and the resolver that
turns ``models:/NAME/VERSION`` and ``runs:/RUN_ID/PATH`` into a bundle directory. The Lightning logger
and config saver are in :mod:`pipelines.tracking_lightning`, so that this module imports without Lightning.

Where runs go
    With no configuration the store is embedded, and no server is needed: a SQLite database at
    ``<cwd>/mlruns/mlflow.db`` holds experiments, runs, parameters, metrics and the model registry
    (MLflow's registry needs a database store; the plain file store is deprecated in MLflow 3), and
    artifact files go under ``<cwd>/mlruns/artifacts/<experiment>/<run_id>/artifacts/``.
    ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`` browses it. Both paths are in
    .gitignore.

    ``MLFLOW_TRACKING_URI`` (MLflow's own variable) points everything at another store instead: a team
    server (``http://mlflow.example:5000``; the server then chooses where artifacts go), another
    database, or another SQLite file (artifacts then go to an ``artifacts`` folder beside that file).
    ``MLFLOW_REGISTRY_URI`` separates the registry as MLflow defines it. ``SSM_SIGNAL_MLFLOW_ARTIFACT_ROOT``
    (a folder or a URI such as ``s3://bucket/prefix``) overrides where this project's new experiments
    keep artifacts, for any store. An artifact location is fixed when an experiment is created, so
    existing experiments keep theirs. This module always passes the URI explicitly and never relies on
    MLflow's process-wide state (``mlflow.set_tracking_uri``), so two stores can be used side by side.

What a training run records
    Parameters: the LightningModule's hyperparameters (``lr``, ``network/backbone/d_model`` ...),
    logged by Lightning through ``MLFlowLogger``, and the rest of the LightningCLI config flattened
    (``data/...``, ``trainer/...``, ``output/...``); the whole config as ``config.yaml``. Metrics: what
    the task logs (``train_loss`` per logging step, ``val_loss``/``val_acc`` per validation epoch,
    ``test_*``). Artifacts: ``bundle/`` (config.json + model.safetensors: the exact files
    ``ssm_signal.save_bundle`` wrote) and ``figures/`` (confusion matrix, learning curves; PNG). Lightning
    checkpoints are not uploaded: they are pickles, and the bundle is the deliverable.

How registry entries look
    ``register_bundle`` creates a version of registered model NAME whose ``source`` is the run's
    ``bundle/`` artifact location and whose ``run_id`` links back to the run, tagged
    ``ssm_signal.format = ssm-signal-bundle`` (plus the bundle's version, head kind, rate, channels and
    test metric). It uses ``MlflowClient.create_model_version`` directly: ``mlflow.register_model`` in
    MLflow 3 accepts a ``runs:/`` URI only when the directory holds an ``MLmodel`` file or the run has a
    LoggedModel of that name (mlflow PR 14487), and both would mean wrapping the model in an MLflow
    flavour (pyfunc pickles a Python object). The registry itself stores any artifact location, on a
    SQLite store and on a server alike (a server accepts a source inside the run's artifact root when
    ``run_id`` names that run). The bundle stays safetensors + JSON.

Loading from the registry
    ``ssm_signal.load_bundle("models:/kws_default/3")`` finds :func:`resolve_uri` through the entry-point
    group ``ssm_signal.uri_resolvers`` (so the library never imports MLflow). Accepted forms:
    ``models:/NAME/VERSION``, ``models:/NAME/latest``, ``models:/NAME@ALIAS``, ``runs:/RUN_ID[/PATH]``
    (PATH defaults to ``bundle``). Artifacts that are already local files (the embedded store) are used
    in place; remote ones are downloaded once into ``<cache>/<store hash>/models/NAME/VERSION`` (or
    ``.../runs/RUN_ID/PATH``), where ``<cache>`` is ``mlflow/`` in the project's cache folder
    (:func:`ssm_signal.cache.cache_dir`: ``$SSM_SIGNAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ssm-signal``). A download lands in a
    temporary folder and is renamed into place only when it is a complete bundle, so an interrupted
    download is never taken for a cached one. Registry versions are immutable, so the cache needs no
    invalidation; ``latest`` and aliases are resolved to a version number first.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssm_signal.bundle import CONFIG_FILE, FORMAT, WEIGHTS_FILE, BundleError
from ssm_signal.cache import cache_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

log = logging.getLogger("ssm_signal.pipelines")

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_REGISTRY_URI = "MLFLOW_REGISTRY_URI"
ENV_ARTIFACT_ROOT = "SSM_SIGNAL_MLFLOW_ARTIFACT_ROOT"

STORE_DIR = "mlruns"
DB_FILE = "mlflow.db"
BUNDLE_ARTIFACT_PATH = "bundle"
FIGURES_ARTIFACT_PATH = "figures"
TAG_PREFIX = "ssm_signal."
FORMAT_TAG = TAG_PREFIX + "format"
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


# ---------------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------------
def default_tracking_uri() -> str:
    """The tracking URI in use: ``$MLFLOW_TRACKING_URI``, else the embedded SQLite store under ``<cwd>/mlruns``."""
    env = os.environ.get(ENV_TRACKING_URI, "").strip()
    if env:
        return env
    return "sqlite:///" + (Path.cwd() / STORE_DIR / DB_FILE).as_posix()


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (relative paths are relative to the cwd); None otherwise."""
    if not uri.startswith("sqlite:///"):
        return None
    path = urllib.parse.unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    return None if path in ("", ":memory:") else Path(path).absolute()


def default_artifact_root(uri: str | None = None) -> str | None:
    """Where new experiments of store ``uri`` keep artifacts (a file URI or any artifact URI).

    None lets the store decide (a tracking server, or a ``file:`` store, which keeps artifacts inside itself).
    """
    env = os.environ.get(ENV_ARTIFACT_ROOT, "").strip()
    if env:
        return env if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+:", env) else Path(env).absolute().as_uri()
    uri = uri or default_tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        return (db.parent / "artifacts").as_uri()
    if urllib.parse.urlparse(uri).scheme.split("+")[0] in _DB_SCHEMES:
        # a database without a server: MLflow's own default would be "./mlruns" relative to whatever
        # directory a later process runs in, so pin it
        return (Path.cwd() / STORE_DIR / "artifacts").as_uri()
    return None


def experiment_artifact_location(experiment: str, uri: str | None = None) -> str | None:
    """Artifact location for a new experiment: ``<artifact root>/<experiment name, made path-safe>``."""
    root = default_artifact_root(uri)
    if root is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return root.rstrip("/") + "/" + safe


class TrackingUnreachable(ConnectionError):
    """The MLflow tracking server does not answer: the URI and what happened."""


def check_tracking_server(uri: str | None = None) -> None:
    """For an http(s) store, fail within :data:`ENV_TIMEOUT` seconds (default 5) when the server does not
    accept connections, naming the URI. MLflow itself retries an unreachable server with backoff for
    about four minutes (255 s measured) before giving up; its retry, backoff and timeout settings
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``..._BACKOFF_FACTOR``, ``..._TIMEOUT``) are lowered to match
    unless set, so a server that accepts connections and then never answers fails in seconds too."""
    import socket

    uri = uri or default_tracking_uri()
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    try:
        timeout = float(os.environ.get(ENV_TIMEOUT, "") or DEFAULT_TIMEOUT_S)
    except ValueError as e:
        raise ValueError(f"{ENV_TIMEOUT} must be a number of seconds, got {os.environ[ENV_TIMEOUT]!r}") from e
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # an int to MLflow
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout))))
    if uri in _REACHABLE:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout).close()
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        raise TrackingUnreachable(
            f"MLflow tracking server {uri} is unreachable ({why} within {timeout:g} s; {ENV_TIMEOUT} sets the "
            f"wait): start it, point {ENV_TRACKING_URI} elsewhere or unset it for the local store"
            " (ssm-signal score: --no-mlflow)") from None
    _REACHABLE.add(uri)


ENV_TIMEOUT = "SSM_SIGNAL_MLFLOW_TIMEOUT"
DEFAULT_TIMEOUT_S = 5.0
_REACHABLE: set[str] = set()  # servers that answered once in this process


def tracking_client(uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` for ``uri`` (default: :func:`default_tracking_uri`); creates a SQLite store's folder,
    and refuses within seconds a tracking server that does not answer (:func:`check_tracking_server`)."""
    from mlflow import MlflowClient

    uri = uri or default_tracking_uri()
    check_tracking_server(uri)
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    registry = os.environ.get(ENV_REGISTRY_URI, "").strip() or uri
    return MlflowClient(tracking_uri=uri, registry_uri=registry)


def experiment_id(name: str, uri: str | None = None) -> str:
    """The id of experiment ``name``, created (with this project's artifact location) if missing."""
    from mlflow.exceptions import MlflowException

    client = tracking_client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise ValueError(f"MLflow experiment {name!r} is deleted in {uri or default_tracking_uri()}: restore it "
                         "(mlflow experiments restore) or choose another output.experiment")
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=experiment_artifact_location(name, uri))
    except MlflowException:  # another process created it in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# ---------------------------------------------------------------------------------------------
# training-time logging
# ---------------------------------------------------------------------------------------------
def log_bundle(run_id: str, bundle_dir: str | os.PathLike, uri: str | None = None) -> str:
    """Upload a bundle directory's files to the run under ``bundle/``; returns that artifact URI."""
    bundle_dir = Path(bundle_dir)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (bundle_dir / f).is_file()]
    if missing:
        raise ValueError(f"{bundle_dir} is not a bundle: {', '.join(missing)} missing")
    client = tracking_client(uri)
    for f in sorted(bundle_dir.iterdir()):
        # the bundle's own files only: no temporaries of an interrupted save, no hidden files
        if f.is_file() and not f.name.startswith(".") and not f.name.endswith(".tmp"):
            client.log_artifact(run_id, str(f), BUNDLE_ARTIFACT_PATH)
    return client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + BUNDLE_ARTIFACT_PATH


# ---------------------------------------------------------------------------------------------
# figures (drawn by pipelines.figures)
# ---------------------------------------------------------------------------------------------
def log_figures(run_id: str, uri: str | None = None, *, confusion: np.ndarray | None = None,
                labels: Sequence[str] | None = None, curves: Mapping[str, Sequence[float]] | None = None
                ) -> list[str]:
    """Render the confusion matrix and learning curves that exist and log them under ``figures/`` as PNG.

    Pieces that are None or empty are skipped (an anomaly model has no confusion matrix; a run without
    validation has no curves). Returns the artifact paths logged (through ``MlflowClient.log_figure``).
    """
    from pipelines.figures import confusion_figure, curves_figure

    figures: list[tuple[str, Figure]] = []
    if confusion is not None and np.asarray(confusion).size:
        figures.append(("confusion_matrix.png", confusion_figure(confusion, labels)))
    if curves:
        fig = curves_figure(curves)
        if fig is not None:
            figures.append(("learning_curves.png", fig))
    if not figures:
        return []
    client = tracking_client(uri)
    logged = []
    for name, fig in figures:
        path = f"{FIGURES_ARTIFACT_PATH}/{name}"
        client.log_figure(run_id, fig, path, save_kwargs={"dpi": 120})
        logged.append(path)
    return logged


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------
def register_bundle(run_id: str, name: str, uri: str | None = None) -> str:
    """Register the run's ``bundle/`` artifact as a new version of model ``name``; returns the version ("1", ...)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    client = tracking_client(uri)
    run = client.get_run(run_id)
    files = {Path(f.path).name for f in client.list_artifacts(run_id, BUNDLE_ARTIFACT_PATH)}
    if not {CONFIG_FILE, WEIGHTS_FILE} <= files:
        raise ValueError(f"run {run_id} has no bundle under {BUNDLE_ARTIFACT_PATH}/ (found {sorted(files)}): "
                         "call log_bundle first")
    source = run.info.artifact_uri.rstrip("/") + "/" + BUNDLE_ARTIFACT_PATH
    local = _local_path(source)
    if local is not None and (local / CONFIG_FILE).is_file():
        meta = json.loads((local / CONFIG_FILE).read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            meta = json.loads(Path(client.download_artifacts(
                run_id, f"{BUNDLE_ARTIFACT_PATH}/{CONFIG_FILE}", tmp)).read_text())
    try:
        client.create_registered_model(name, description="ssm-signal model bundles (config.json + model.safetensors)")
    except MlflowException as e:
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    model = meta.get("model", {})
    tags = {FORMAT_TAG: FORMAT, TAG_PREFIX + "format_version": str(meta.get("format_version")),
            TAG_PREFIX + "bundle_version": str(meta.get("version", "")),
            TAG_PREFIX + "head": str(model.get("head", {}).get("kind", "")),
            TAG_PREFIX + "sample_rate": str(meta.get("sample_rate", "")),
            TAG_PREFIX + "channels": str(model.get("frontend", {}).get("in_channels", ""))}
    for k in ("test_acc", "test_auroc"):
        if k in meta.get("metrics", {}):
            tags[TAG_PREFIX + k] = f"{float(meta['metrics'][k]):.6g}"
    mv = client.create_model_version(name, source, run_id=run_id, tags=tags,
                                     description=f"bundle {meta.get('name', name)} v{meta.get('version', '?')}")
    return str(mv.version)


def list_registered_bundles(uri: str | None = None) -> list[dict[str, Any]]:
    """Registered bundle versions, newest first: dicts with name, version, uri (``models:/NAME/VERSION``),
    source, run_id, creation_time (ISO 8601, UTC), aliases, description and the ``ssm_signal.*`` tags
    (without the prefix). Versions not registered by :func:`register_bundle` (other model kinds) are left out."""
    db = _sqlite_path(uri or default_tracking_uri())
    if db is not None and not db.is_file():
        return []  # no store yet: nothing registered (and no empty database created)
    client = tracking_client(uri)
    versions, token = [], None
    while True:
        page = client.search_model_versions(max_results=1000, page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            break
    aliases: dict[tuple[str, str], list[str]] = {}  # search_model_versions leaves ModelVersion.aliases empty
    token = None
    while True:
        models = client.search_registered_models(max_results=1000, page_token=token)
        for rm in models:
            for alias, version in (rm.aliases or {}).items():
                aliases.setdefault((rm.name, str(version)), []).append(alias)
        token = models.token
        if not token:
            break
    out = []
    for mv in versions:
        tags = dict(mv.tags or {})
        if tags.get(FORMAT_TAG) != FORMAT:
            continue
        created = _dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, _dt.UTC).isoformat(timespec="seconds")
        out.append({"name": mv.name, "version": str(mv.version), "uri": f"models:/{mv.name}/{mv.version}",
                    "source": mv.source, "run_id": mv.run_id, "creation_time": created,
                    "creation_timestamp_ms": int(mv.creation_timestamp), "aliases": sorted(aliases.get((mv.name, str(mv.version)), [])),
                    "description": mv.description or "",
                    "tags": {k[len(TAG_PREFIX):]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}})
    out.sort(key=lambda d: (-d["creation_timestamp_ms"], d["name"], -int(d["version"])))
    return out


# ---------------------------------------------------------------------------------------------
# models:/ and runs:/ -> a local bundle directory
# ---------------------------------------------------------------------------------------------
def resolve_uri(uri: str, *, tracking_uri: str | None = None, force_download: bool = False) -> str:
    """``models:/NAME/VERSION``, ``models:/NAME/latest``, ``models:/NAME@ALIAS`` or ``runs:/RUN_ID[/PATH]``
    -> the path of a local bundle directory.

    tracking_uri: the store (default :func:`default_tracking_uri`). Local artifacts are used in place and
    remote ones downloaded into the cache; force_download=True sends local ones through the cache too.
    Raises BundleError (a ValueError) naming what is missing: unknown model, version, alias or run.
    """
    from mlflow.exceptions import MlflowException

    store = tracking_uri or default_tracking_uri()
    db = _sqlite_path(store)
    if db is not None and not db.is_file():  # do not create an empty store just to find nothing in it
        raise BundleError(f"{uri}: there is no MLflow store at {db} (train a model first, or set "
                          f"{ENV_TRACKING_URI} to the store that holds it)")
    client = tracking_client(store)
    store_key = hashlib.sha1(store.encode()).hexdigest()[:12]
    try:
        if uri.startswith("models:/"):
            name, version = _model_version(client, uri, store)
            source = client.get_model_version_download_uri(name, version)
            target = cache_dir("mlflow") / store_key / "models" / _safe(name) / version
        elif uri.startswith("runs:/"):
            parts = uri[len("runs:/"):].strip("/").split("/", 1)
            run_id, path = parts[0], (parts[1].strip("/") if len(parts) > 1 else "") or BUNDLE_ARTIFACT_PATH
            if not run_id:
                raise BundleError(f"{uri}: expected runs:/RUN_ID[/PATH]")
            try:
                run = client.get_run(run_id)
            except MlflowException as e:
                raise BundleError(f"{uri}: no run {run_id!r} in {store}") from e
            source = run.info.artifact_uri.rstrip("/") + "/" + path
            target = cache_dir("mlflow") / store_key / "runs" / run_id / path
        else:
            raise BundleError(f"{uri}: expected models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH")
        local = _local_path(source)
        if local is not None and not force_download:
            if not _is_bundle(local):
                raise BundleError(f"{uri}: {local} is not an ssm-signal bundle ({CONFIG_FILE} and {WEIGHTS_FILE} "
                                  "expected)")
            return str(local)
        return str(_download(source, target, uri, store))
    except MlflowException as e:  # anything MLflow reports that the branches above did not name
        raise BundleError(f"{uri}: {e.message} (store {store})") from e


def _model_version(client, uri: str, store: str) -> tuple[str, str]:
    from mlflow.exceptions import MlflowException

    rest = uri[len("models:/"):].strip("/")
    if "@" in rest and "/" not in rest:
        name, alias = rest.split("@", 1)
        ref = "latest" if alias.lower() == "latest" else None
    else:
        parts = rest.split("/")
        if len(parts) != 2 or not all(parts):
            raise BundleError(f"{uri}: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS")
        name, ref = parts
        alias = None
    try:
        known = list(client.search_model_versions(_name_filter(name)))
    except MlflowException as e:
        raise BundleError(f"{uri}: cannot search the registry of {store}: {e.message}") from e
    if not known:
        names = sorted({b["name"] for b in list_registered_bundles(store)})
        raise BundleError(f"{uri}: no registered model {name!r} (or it has no versions) in {store} "
                          f"(registered bundles: {', '.join(names) or 'none'})")
    numbers = sorted(int(mv.version) for mv in known)
    if ref is None:  # an alias
        try:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as e:
            raise BundleError(f"{uri}: model {name!r} has no alias {alias!r} in {store}") from e
    if ref.lower() == "latest":
        return name, str(numbers[-1])
    if not ref.isdigit():
        raise BundleError(f"{uri}: version must be a number or 'latest' (or use models:/NAME@ALIAS), got {ref!r}")
    if int(ref) not in numbers:
        raise BundleError(f"{uri}: model {name!r} has no version {ref} in {store} "
                          f"(versions: {', '.join(map(str, numbers))})")
    return name, str(int(ref))


def _name_filter(name: str) -> str:
    if "'" in name and '"' in name:
        raise BundleError(f"model name {name!r} contains both quote characters")
    return f"name = '{name}'" if "'" not in name else f'name = "{name}"'


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _local_path(artifact_uri: str) -> Path | None:
    """The local directory behind a ``file:`` URI or a plain path; None for remote artifact stores."""
    p = urllib.parse.urlparse(artifact_uri)
    if p.scheme == "file" and p.netloc in ("", "localhost"):
        return Path(urllib.request.url2pathname(p.path))
    if p.scheme == "" or (len(p.scheme) == 1 and os.name == "nt"):
        return Path(artifact_uri)
    return None


def _is_bundle(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def _download(source: str, target: Path, uri: str, store: str) -> Path:
    """Download ``source`` into ``target`` once; a complete earlier download is reused."""
    import mlflow.artifacts

    if _is_bundle(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    try:
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=store))
        if not _is_bundle(got):
            raise BundleError(f"{uri}: {source} is not an ssm-signal bundle ({CONFIG_FILE} and {WEIGHTS_FILE} "
                              "expected)")
        if target.exists():  # an incomplete leftover (complete ones returned above)
            shutil.rmtree(target)
        try:
            os.replace(got, target)
        except OSError:
            if not _is_bundle(target):  # not a concurrent download that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("downloaded %s to %s", uri, target)
    return target
