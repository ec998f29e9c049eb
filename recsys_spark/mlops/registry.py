"""The Model Registry side of MLflow: the saved model logged as the Spark-free pyfunc (with its
pinned requirements), registered with a `champion` alias that moves only to a better model,
downloaded again by recommend, and replaced after an erasure. Imports no pyspark."""

from __future__ import annotations

import contextlib
import importlib.metadata
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow

from recsys_spark.config import RegistryConfig
from recsys_spark.errors import RecsysError
from recsys_spark.mlops.tracking import log_dataset, redact_uri, tracking_uri_now

if TYPE_CHECKING:  # the registry imports no pyspark
    from recsys_spark.recs.promotion import HeadToHead

CHAMPION = "champion"


def replace_erased_model(run_id: str, scrubbed_dir: str) -> list[str]:
    """After forget rewrote the saved model (`scrubbed_dir`): replace the `model/` artifacts of
    the run that logged the old one, delete the artifacts of every model it logged (the pyfuncs
    hold the users' factors and seen pairs), log the scrubbed model as a new version of each
    registered model it had versions in, move the old versions' aliases to it, and tag the old
    versions unservable.
    Returns what it did, a line each. Needs the active run (the forget run) and the old run here."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    done = []
    if any(f.path == "model" for f in client.list_artifacts(run_id)):
        get_artifact_repository(run.info.artifact_uri).delete_artifacts("model")
        client.log_artifacts(run_id, scrubbed_dir, "model")
        done.append(f"MLflow run {run_id}: model/ artifacts replaced by the rewritten model")
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    versions = [  # versions an earlier forget replaced are unservable already
        v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.tags.get("erased_data_removed") != "true"
    ]
    new = {}
    # The quality the old versions were judged by travels with the new one, so the champion check of
    # the next train compares against it (the forget run has no metrics of its own).
    carried = {f"metric.{k}": str(v) for k, v in run.data.metrics.items() if "_at_" in k}
    for v in versions:
        carried |= {k: val for k, val in v.tags.items() if k.startswith("metric.")}
    for name in sorted({v.name for v in versions}):
        new[name] = log_pyfunc(scrubbed_dir, name).registered_model_version
        for k, val in carried.items():
            client.set_model_version_tag(name, new[name], k, val)
        done.append(f"registered {name} v{new[name]}: the rewritten model, logged by this forget run")
    for model in logged:
        get_artifact_repository(model.artifact_location).delete_artifacts()
        done.append(f"logged model {model.model_id} of run {run_id}: artifacts deleted")
    for v in versions:
        for alias in client.get_model_version(v.name, v.version).aliases:  # a search does not fill in aliases
            client.set_registered_model_alias(v.name, alias, new[v.name])
            done.append(f"alias {alias} moved from {v.name} v{v.version} to v{new[v.name]}")
        client.set_model_version_tag(v.name, v.version, "erased_data_removed", "true")
        client.update_model_version(
            v.name, v.version, description=f"Unservable: its artifacts were deleted by forget (use v{new[v.name]})."
        )
        done.append(f"{v.name} v{v.version}: artifacts deleted, tagged erased_data_removed=true (unservable)")
    return done


def _package_dir(tmp: str) -> str:
    """This package's source folder, for the pyfunc's code_paths. Under `spark-submit --py-files
    recsys_spark.zip` the package sits inside the zip, which MLflow cannot copy: extract it to `tmp`."""
    here = Path(__file__).resolve().parents[1]  # recsys_spark/, above mlops/
    if here.is_dir():
        return str(here)
    archive = next(p for p in here.parents if p.is_file())
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp, [m for m in z.namelist() if m.startswith(f"{here.name}/")])
    return str(Path(tmp) / here.name)


SERVING_PACKAGES = ("mlflow-skinny", "numpy", "pandas", "pyarrow", "pyyaml")  # what serving.py imports; no pyspark


def serving_requirements() -> list[str]:
    """The pyfunc's pip requirements: the packages serving.py needs, pinned to this environment's
    versions (mlflow-skinny: MLflow's client without its server; a serving host needs no Spark)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in SERVING_PACKAGES]


def log_pyfunc(local_dir: str, name: str | None) -> Any:
    """Log the saved model directory as the `recommender` pyfunc of the active run, with this
    package's code inside it (registered as `name` unless None). Returns MLflow's ModelInfo."""
    from recsys_spark.mlops.serving import SIGNATURE, Recommender

    with tempfile.TemporaryDirectory() as tmp, _without_notices():
        return mlflow.pyfunc.log_model(
            name="recommender",
            python_model=Recommender(),
            artifacts={"model": local_dir},
            code_paths=[_package_dir(tmp)],
            registered_model_name=name,
            signature=SIGNATURE,
            pip_requirements=serving_requirements(),
        )


@contextlib.contextmanager
def _without_notices() -> Iterator[None]:
    """Logging the pyfunc without MLflow's notices that ask nothing of the user: the cloudpickle caution
    (the pickled object is this package's own class), "no input example" (the signature is given) and
    the registry's "Successfully registered" prints (the summary's `model:` line says what happened).
    MLflow's own stream is off meanwhile; other output, and any exception, pass as usual."""
    from mlflow.utils.logging_utils import disable_logging, enable_logging

    disable_logging()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            yield
    finally:
        enable_logging()


def champion_version(name: str | None, dataset_input: str | None) -> Any:
    """The `champion` version of `name` when it was trained on `dataset_input` (the same raw
    input: only then are the two compared), else None."""
    champion = _champion(name) if name is not None and mlflow.active_run() is not None else None
    return champion if champion is not None and _other_input(champion, dataset_input) is None else None


def _champion(name: str) -> Any:
    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:  # no such model, or no alias yet
        return None


def _other_input(champion: Any, dataset_input: str | None) -> str | None:
    """The raw input `champion` was trained on when both inputs are known and differ, else None."""
    theirs = champion.tags.get("dataset_input")
    return theirs if dataset_input and theirs and theirs != dataset_input else None


def register_model(
    local_dir: str,
    name: str | None,
    metric: str,
    value: float,
    baseline: float,
    dataset: dict[str, str] | None = None,
    head: HeadToHead | None = None,
    rules: RegistryConfig | None = None,
) -> str:
    """Log the saved model as a Spark-free pyfunc (serving.Recommender), register it as `name`
    with the data it was trained on (`dataset`: the train run's dataset tags, on the version and in
    its description), and move the `champion` alias to it only when it beats the popularity
    baseline and the current champion. `head` is the champion scored on this run's test split
    (recs/promotion.py): the challenger must beat it there by more than `rules.min_improvement`,
    and with `rules.require_significant` the paired interval must lie above 0. Without `head`
    (a champion from before dataset tags, or one that scores none of the test users) the
    champion's logged number is the bar. A champion trained on another input is never compared.
    Returns what happened, for the summary."""
    if mlflow.active_run() is None:
        return "not registered: tracking is off"
    rules = rules or RegistryConfig()
    info = log_pyfunc(local_dir, name)
    log_dataset(dataset or {}, info.model_id)
    if name is None:
        return "logged as a pyfunc (train.registered_model is null: not registered)"
    version = info.registered_model_version
    client = mlflow.MlflowClient()
    mine = (dataset or {}).get("dataset_input")
    if dataset:
        for key, tag in dataset.items():
            client.set_model_version_tag(name, version, key, tag)
        client.update_model_version(name, version, description=describe_dataset(dataset))
    champion = _champion(name)
    stays = f"{name} v{version} registered; {CHAMPION} stays " + (f"v{champion.version}" if champion else "unset")
    if value <= baseline:
        return f"{stays}: {metric} {value:.4f} does not beat popularity {baseline:.4f}"
    theirs = _other_input(champion, mine) if champion is not None else None
    if theirs:
        return (
            f"{stays}: it was trained on {theirs}, this version on {mine}, and models of different data are not "
            "compared (give each dataset its own train.registered_model, or move the alias by hand)"
        )
    beats = ""
    if champion is not None and head is not None:
        for key, tag in head.tags().items():
            client.set_model_version_tag(name, version, key, tag)
        # A tie at the bar keeps the champion, except on the refit path: there the two differ only by
        # configuration, and an equal one fitted on fresher data serves (else a daily retrain with
        # unchanged parameters never moves the alias while the champion's data holds the test window).
        if head.difference < rules.min_improvement or (head.difference == rules.min_improvement and not head.refit):
            bar = f" by more than registry.min_improvement {rules.min_improvement:g}" if rules.min_improvement else ""
            return f"{stays}: it is not beaten{bar} {head.describe()}"
        if rules.require_significant and not head.low > 0:  # nan (no interval) is not significant
            return f"{stays}: the difference is not significant (registry.require_significant) {head.describe()}"
        beats = f"; beats v{champion.version} {head.describe()}"
    elif champion is not None:
        best = client.get_run(champion.run_id).data.metrics.get(metric)
        if best is None and f"metric.{metric}" in champion.tags:  # a version forget rewrote: its carried score
            best = float(champion.tags[f"metric.{metric}"])
        if best is not None and value <= best:
            return f"{stays}: {metric} {value:.4f} does not beat its logged {best:.4f} (its own test split)"
    client.set_registered_model_alias(name, CHAMPION, version)
    return (
        f"{name} v{version} registered and is now {CHAMPION} ({metric} {value:.4f}, popularity {baseline:.4f}){beats}"
    )


def describe_dataset(tags: dict[str, str]) -> str:
    """A model version's description: the data it was trained on, from the train run's dataset tags."""
    return (
        f"Trained on {tags.get('dataset_input')}: {tags.get('data_rows')} clean events from "
        f"{tags.get('data_first_date')} to {tags.get('data_last_date')} ({tags.get('data_partitions')} partitions, "
        f"sha1 {tags.get('data_partitions_sha1')}; events table {tags.get('dataset_path')})."
    )


def download_model(uri: str) -> str:
    """`runs:/<id>/model` -> a local directory holding the model's artifacts."""
    dst = tempfile.mkdtemp(prefix="recsys-model-")
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)
    except Exception as e:  # MLflow raises several types for a bad URI
        raise RecsysError(
            f"cannot download model {uri} from MLflow ({redact_uri(tracking_uri_now())}): "
            f"{redact_uri(str(e).splitlines()[0])}"
        ) from None
