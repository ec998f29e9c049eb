"""MLflow tracking for every job: one parent run per pipeline, one nested run per stage.

The tracking URI comes from config, else MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` in the
working directory. A remote server is checked before any Spark work, so a wrong URI fails in
seconds with the URI in the message. A job that raises marks its run (and the parent) FAILED
with the error as a tag and an artifact.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import logging
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, LoggedModelOutput, Metric

from recsys_spark.config import FIT_PARAMS, Config, flatten
from recsys_spark.errors import RecsysError
from recsys_spark.infra.lock import process_alive

log = logging.getLogger("recsys_spark")

DEFAULT_URI = "sqlite:///mlflow.db"
# A config key is a secret when any of its parts (split at . _ -) is one of SECRET_PARTS, ends or
# starts with "key" (accesskey, keyfile), or holds one of SECRET_WORDS: Hadoop and cloud keys put the
# secret's name anywhere (fs.azure.account.key.<account>.dfs.core.windows.net, fs.azure.sas.<c>.<a>...).
SECRET_PARTS = frozenset({"key", "pwd", "pass", "auth", "sas", "sig", "salt", "jaas"})
SECRET_WORDS = ("password", "passwd", "token", "secret", "credential", "signature", "private")
SECRET_QUERY = re.compile(r"([?&](?:sig|signature|token|access_token|key|password|code)=)[^&\s]+", re.IGNORECASE)
PERSONAL_KEYS = ("recommend.users",)  # config keys holding raw user ids: logged as a count only
PARENT_TAG = "mlflow.parentRunId"


def tracking_uri(cfg: Config) -> str:
    return cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2], path=f"{parts.path.rstrip('/')}/health")
    request = urllib.request.Request(urllib.parse.urlunsplit(bare))
    if parts.username is not None:  # http://user:pw@host: basic auth, as MLflow's client sends it
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        token = base64.b64encode(pair.encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")  # never forwarded to a redirect
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if resp.status == 200:
                return
            problem = f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as e:
        problem = str(getattr(e, "reason", e))
    raise RecsysError(
        f"MLflow tracking server {redact_uri(uri)} is not reachable ({redact_uri(problem)}): "
        "start it, or point tracking.uri / MLFLOW_TRACKING_URI at a running server, or set tracking.enabled=false"
    )


def redact_uri(text: str) -> str:
    """Hide the credentials of any URI in `text`: https://user:pw@host -> https://***@host, and
    secret query parameters (a SAS token's sig=..., token=...)."""
    return SECRET_QUERY.sub(r"\1***", re.sub(r"([A-Za-z][\w+.-]*://)[^/@\s]+@", r"\1***@", text))


def is_secret_key(key: str) -> bool:
    """Whether a config key names a secret (see SECRET_PARTS)."""
    parts = [p for p in re.split(r"[._-]", key.lower()) if p]
    return any(
        p in SECRET_PARTS or p.startswith("key") or p.endswith("key") or any(w in p for w in SECRET_WORDS)
        for p in parts
    )


def redact(params: dict[str, Any]) -> dict[str, Any]:
    """Hide values whose key names a secret (`is_secret_key`), raw user ids (PERSONAL_KEYS: their
    count only), and the credentials inside any URI."""
    out = {}
    for k, v in params.items():
        if k in PERSONAL_KEYS and v is not None:
            out[k] = f"{len(v)} user ids (not logged)"
        else:
            out[k] = "***" if is_secret_key(k) else redact_uri(v) if isinstance(v, str) else v
    return out


def config_params(cfg: Config) -> dict[str, str]:
    """The flattened resolved config, redacted, as MLflow param strings."""
    return {k: _short(v) for k, v in redact(flatten(cfg.to_dict())).items()}


def environment_params(master: str | None) -> dict[str, str]:
    out = {"spark_master": str(master), "python_version": platform.python_version()}
    for pkg in ("pyspark", "mlflow", "pandas", "pyarrow", "numpy", "recsys-spark"):
        try:
            out[f"version_{pkg.replace('-', '_')}"] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    commit = _git_commit()
    if commit:
        out["git_commit"] = commit
    return out


@contextmanager
def tracked_run(cfg: Config, name: str, nested: bool = False, parent_run_id: str | None = None) -> Iterator[str | None]:
    """An MLflow run for job `name`; yields its id (None when tracking is off).

    `nested` puts it under the active run; `parent_run_id` attaches a top-level job to a parent
    started elsewhere (e.g. by an orchestrator).
    """
    if not cfg.tracking.enabled:
        yield None
        return
    tags = {"job": name, "host": socket.gethostname(), "pid": str(os.getpid())}  # so a killed run can be told apart
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    run = mlflow.start_run(run_name=name if nested else run_name(cfg, name), nested=nested, tags=tags)
    try:
        yield run.info.run_id
    except BaseException as e:
        mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
        mlflow.log_text(f"{type(e).__name__}: {e}\n", "error.txt")
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def dataset_name(input_path: str) -> str:
    """The input's last path part (`online_retail`, `ml-100k`, `raw` for generated events)."""
    return Path(urllib.parse.urlparse(input_path).path.rstrip("/")).name or input_path


def run_name(cfg: Config, job: str) -> str:
    """A top-level run's name in the MLflow UI: the job, the dataset and the day (`pipeline ml-100k
    2026-12-07`); `tags.job` stays the job alone, for searches."""
    data = "generated" if cfg.input.path is None else dataset_name(cfg.input_path)
    return f"{job} {data} {dt.datetime.now(dt.UTC):%Y-%m-%d}"


def log_dataset(tags: dict[str, str], model_id: str | None) -> None:
    """Log the training data as an MLflow dataset (source = the raw input, digest = the events
    table's fingerprint) on the active run and its parent, and the logged model as the parent's
    output, so the UI's Dataset and Models columns name them for the pipeline run too."""
    run = mlflow.active_run()
    if run is None or not tags:
        return
    uri = tags["dataset_input"]
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local path, as meant
        warnings.simplefilter("ignore")
        try:
            source = resolve_dataset_source(uri)
        except mlflow.exceptions.MlflowException:  # a scheme MLflow has no source for (s3a://, abfss://)
            source = HTTPDatasetSource(uri)
    fingerprint = "|".join(tags.get(k, "") for k in ("data_rows", "data_first_date", "data_last_date"))
    digest = hashlib.sha1(f"{fingerprint}|{tags.get('data_partitions_sha1', '')}".encode()).hexdigest()[:12]
    dataset = MetaDataset(source, name=dataset_name(uri), digest=digest)._to_mlflow_entity()
    client = mlflow.MlflowClient()
    for run_id in filter(None, (run.info.run_id, run.data.tags.get(PARENT_TAG))):
        client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])
        if model_id and run_id != run.info.run_id:  # the train run is the model's source already
            client.log_outputs(run_id, [LoggedModelOutput(model_id, 0)])


def start(cfg: Config) -> None:
    """Point MLflow at the configured store and experiment (checking a server is up)."""
    if not cfg.tracking.enabled:
        return
    uri = tracking_uri(cfg)
    check_reachable(uri)
    with _store_init_lock(uri):
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(cfg.tracking.experiment)


@contextmanager
def _store_init_lock(uri: str) -> Iterator[None]:
    """MLflow creates (and migrates) a SQLite store's tables on first use; two processes doing that
    at once fail ("table ... already exists"). A file lock beside the store makes them take turns."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(f"{uri.removeprefix('sqlite:///')}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


def end_orphaned_runs(cfg: Config) -> list[str]:
    """Mark KILLED the runs of this experiment still RUNNING whose process, on this host, is gone
    (a run killed with -9 cannot end itself). Returns their ids."""
    if not cfg.tracking.enabled:
        return []
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return []
    ended = []
    host = socket.gethostname()
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        pid = run.data.tags.get("pid", "")
        if run.data.tags.get("host") == host and pid.isdigit() and not process_alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    return ended


def log_config(cfg: Config, master: str | None) -> None:
    if mlflow.active_run() is None:
        return
    mlflow.log_params({**config_params(cfg), **environment_params(master)})
    mlflow.log_text(yaml.safe_dump(redact_nested(cfg.to_dict()), sort_keys=False), "config/resolved.yaml")


def redact_nested(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out[k] = redact_nested(v, key + ".") if isinstance(v, dict) else redact({key: v})[key]
    return out


def log_metrics(metrics: dict[str, float]) -> None:
    if mlflow.active_run() is not None and metrics:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})


def log_step_metrics(run_id: str | None, metrics: dict[str, float], step: int) -> None:
    """Metrics at `step` on the run `run_id` (None: tracking off), from any thread: a stream's
    micro-batches run on Spark's callback thread, which has no active run of its own."""
    if run_id is not None:
        stamp = int(time.time() * 1000)
        rows = [Metric(k, float(v), stamp, step) for k, v in metrics.items() if v is not None]
        mlflow.MlflowClient().log_batch(run_id, metrics=rows)


def log_params(params: dict[str, Any]) -> None:
    if mlflow.active_run() is not None:
        mlflow.log_params({k: _short(v) for k, v in params.items()})


def log_tags(tags: dict[str, Any]) -> None:
    if mlflow.active_run() is not None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_dir(local_dir: str | Path, artifact_path: str) -> None:
    if mlflow.active_run() is not None:
        mlflow.log_artifacts(str(local_dir), artifact_path)


def log_bytes(data: bytes, artifact_file: str) -> None:
    """Log in-memory content (a PNG, a CSV) as an artifact file."""
    if mlflow.active_run() is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        mlflow.log_artifact(str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None)


def log_trials(rows: list[dict[str, Any]], metric: str) -> None:
    """One nested run per tuning trial (params, validation metric, seconds, complete/pruned), so
    the MLflow compare view shows the search."""
    if mlflow.active_run() is None:
        return
    for row in rows:
        with mlflow.start_run(
            run_name=f"trial-{row['trial']}", nested=True, tags={"job": "tune_trial", "state": row["state"]}
        ):
            mlflow.log_params({k: v for k, v in row.items() if k in FIT_PARAMS})
            scores = {f"validation_{m}": row[m] for m in (metric, f"rung_{metric}") if row.get(m) is not None}
            mlflow.log_metrics({**scores, "seconds": row["seconds"]})


def tag_run(run_id: str | None, tags: dict[str, str]) -> bool:
    """Set tags on another run (e.g. the one that logged the current model) and on every registered
    model version logged from it; whether it did (not when tracking is off or the run is not in this store)."""
    if run_id is None or mlflow.active_run() is None:
        return False
    client = mlflow.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        log.warning("[tracking] run %s of the current model is not in this MLflow store: not tagged", run_id)
        return False
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
        for version in versions:
            client.set_model_version_tag(version.name, version.version, k, v)
    return True


def current_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def fingerprint(count: int, first: Any, last: Any, partitions: list[str]) -> dict[str, str]:
    """Tags that identify a dataset: rows, date range, and a hash of its partition list."""
    digest = hashlib.sha1("\n".join(sorted(partitions)).encode()).hexdigest()[:12]
    return {
        "data_rows": str(count),
        "data_first_date": str(first),
        "data_last_date": str(last),
        "data_partitions": str(len(partitions)),
        "data_partitions_sha1": digest,
    }


def tracking_uri_now() -> str:
    return mlflow.get_tracking_uri()


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 500 else s[:497] + "..."


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
