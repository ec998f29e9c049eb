"""The served model: registered in MLflow with a champion alias, loaded as a pyfunc without Spark,
and served by a real `mlflow models serve` process on 127.0.0.1."""

import dataclasses
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F

from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.runner import JOBS
from recsys_spark.mlops import registry, tracking
from recsys_spark.recs.ease import Setting

from support import BIN, failure, free_port, inside, mlflow_state, scrubbed_env, server

CHAMPION = "models:/recsys-spark@champion"


@pytest.fixture
def registered(pipeline_run):
    """The suite's tracked run, whose train registered the model and whose recommend wrote the table."""
    with mlflow_state():
        mlflow.set_tracking_uri(pipeline_run.cfg.tracking.uri)
        yield pipeline_run.base, pipeline_run.cfg, pipeline_run.stdout


def table_rows(spark, cfg, users):
    recs = read_table(spark, cfg.path("recommendations")).where(F.col("user_id").isin(users)).orderBy("user_id", "rank")
    return [
        (r.user_id, r.rank, r.item_id, round(r.score, 5), r.source, [b.item_id for b in r.because or []])
        for r in recs.collect()
    ]


def served_rows(frame):
    frame = frame.sort_values(["user_id", "rank"])
    return [
        (
            r.user_id,
            int(r.rank),
            r.item_id,
            round(float(r.score), 5),
            r.source,
            [b["item_id"] for b in (r.because if isinstance(r.because, list) else [])],
        )
        for r in frame.itertuples()
    ]


def test_champion_loads_without_spark_and_matches_the_table(spark, registered):
    base, cfg, stdout = registered
    assert "model: recsys-spark v1 registered and is now champion" in stdout
    users = [
        r.user_id
        for r in read_table(spark, cfg.path("recommendations"))
        .select("user_id")
        .distinct()
        .orderBy("user_id")
        .limit(4)
        .collect()
    ]
    model = mlflow.pyfunc.load_model(CHAMPION)
    got = model.predict(pd.DataFrame({"user_id": users + ["nobody"]}))
    assert served_rows(got[got.user_id != "nobody"]) == table_rows(spark, cfg, users)
    popular = got[got.user_id == "nobody"]
    assert set(popular.source) == {"popular_unknown_user"} and list(popular["rank"]) == list(
        range(1, cfg.recommend.n + 1)
    )
    # Its scores are popularity shares: distinct users per item over the model's users, best first.
    saved = Path(cfg.path("model"))
    shares = pd.read_parquet(saved / "popular")["popularity"].sort_values(ascending=False) / len(
        pd.read_parquet(saved / "users")
    )
    assert popular.score.tolist() == pytest.approx(shares.head(cfg.recommend.n).tolist(), rel=1e-6)


def test_a_frame_of_every_user_is_answered_in_one_batch_like_the_table(spark, registered):
    """The batch path (score_batch over all scored users at once) gives the table's rows for every
    treated user, in the request's order, with an unknown user's popular list in its place."""
    base, cfg, _ = registered
    recs = read_table(spark, cfg.path("recommendations")).where("arm = 'treatment' and source in ('als', 'ease')")
    users = sorted({r.user_id for r in recs.select("user_id").distinct().collect()}, reverse=True)
    model = mlflow.pyfunc.load_model(CHAMPION)
    got = model.predict(pd.DataFrame({"user_id": [users[0], "nobody", *users[1:]]}))
    assert served_rows(got[got.user_id != "nobody"]) == table_rows(spark, cfg, users)
    assert list(dict.fromkeys(got.user_id))[:3] == [users[0], "nobody", users[1]]
    assert set(got[got.user_id == "nobody"].source) == {"popular_unknown_user"} and len(users) > 100


def test_a_model_no_better_on_the_same_split_does_not_take_the_alias(spark, registered, tmp_path):
    base, cfg, _ = registered
    # The same events in a root of its own (the shared run's tables stay as they are), its run in an
    # experiment of its own: the registry and the alias are the store's. The challenger has the
    # champion's parameters: on the same split the two fit the same model, a difference of 0, which
    # does not clear registry.min_improvement.
    saved = yaml.safe_load((Path(cfg.path("model")) / "config.yaml").read_text())
    chosen, family, setting = saved["chosen"], saved["family"], Setting.of_model(saved)
    worse = dataclasses.replace(
        cfg,
        output=dataclasses.replace(cfg.output, root=str(tmp_path / "out")),
        input=dataclasses.replace(cfg.input, path=cfg.input_path),  # the same dataset: the models are compared
        tracking=dataclasses.replace(cfg.tracking, experiment="worse-model"),
        tune=dataclasses.replace(cfg.tune, enabled=False),
        als=dataclasses.replace(cfg.als, **chosen),
        model=dataclasses.replace(cfg.model, family=family),  # the champion's family (auto picked it)
        ease=dataclasses.replace(cfg.ease, lambdas=[setting.lam], dropouts=[setting.dropout]),
        registry=dataclasses.replace(cfg.registry, min_improvement=0.001),
    )
    shutil.copytree(cfg.path("events"), worse.path("events"))
    before = mlflow.MlflowClient().get_model_version_by_alias("recsys-spark", "champion").version
    with inside(base):
        tracking.start(worse)
        with tracking.tracked_run(worse, "train"):
            out = JOBS["train"](spark, worse)
    # Scored on the same split: the champion's model saw this test window (same data), so its
    # parameters are refit on this run's training side and both lists are scored on the same users.
    assert (
        f"champion stays v{before}: it is not beaten by more than registry.min_improvement 0.001 "
        "on this run's test split" in out.registry
    ), out.registry
    assert "the champion's parameters refit on this split" in out.registry and "difference +0.0000" in out.registry
    newest = max(mlflow.MlflowClient().search_model_versions("name = 'recsys-spark'"), key=lambda v: int(v.version))
    assert newest.tags["champion_compared_on"] == "refit_params" and float(newest.tags["champion_ndcg_at_10"]) > 0
    assert mlflow.MlflowClient().get_model_version_by_alias("recsys-spark", "champion").version == before


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_the_table(spark, registered):
    base, cfg, _ = registered
    port = free_port()
    command = [str(BIN / "mlflow"), "models", "serve", "-m", CHAMPION, "--env-manager", "local"]
    env = {"MLFLOW_TRACKING_URI": cfg.tracking.uri}
    with server([*command, "-h", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}/ping", base, env):
        users = ["u0000001", "u0000002"]
        body = json.dumps({"dataframe_split": {"columns": ["user_id"], "data": [[u] for u in users]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
        got = pd.DataFrame(answer["predictions"])
        assert served_rows(got) == table_rows(spark, cfg, users)
        bad = json.dumps({"dataframe_split": {"columns": ["user_id", "n"], "data": [["u0000001", 0]]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", bad, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=60)
        assert e.value.code == 400 and "n must be a whole number of at least 1" in e.value.read().decode()
        # The README's request: a brand-new user served from the history in the request.
        items = [
            r.item_id for r in read_table(spark, cfg.path("events")).select("item_id").distinct().limit(2).collect()
        ]
        body = {"dataframe_split": {"columns": ["user_id", "history"], "data": [["new-user", items]]}}
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        got = pd.DataFrame(json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"])
        assert len(got) == cfg.recommend.n and set(got.source) == {"ease_fold_in"} and not set(got.item_id) & set(items)


def test_bad_requests_are_refused_naming_the_fix(registered):
    """No user_id column was an AttributeError, n <= 0 crashed or gave 79 rows, n=2.7 became 2, and
    None / NaN were answered as users "None" / "nan"."""
    model = mlflow.pyfunc.load_model(CHAMPION)
    one = {"user_id": ["u0000001"]}
    cases = [
        ({"user": ["u0000001"]}, "user_id"),
        ({**one, "n": [0]}, r"n must be a whole number of at least 1; rows \[0\] have \[0\]"),
        ({**one, "n": [-3]}, r"n must be a whole number of at least 1; rows \[0\] have \[-3\]"),
        ({**one, "n": [2.7]}, "n"),
        ({"user_id": [None]}, "user_id"),
        ({"user_id": ["   "]}, r"user_id must be a non-empty string; rows \[0\]"),
        ({**one, "history": ["i0001"]}, "history.*Expected data to be list or numpy array, got str"),  # MLflow's check
        ({**one, "history": [["i0001", "  "]]}, r"history must be a list of item id strings; rows \[0\]"),
    ]
    for frame, message in cases:
        with pytest.raises(mlflow.exceptions.MlflowException, match=message):
            model.predict(pd.DataFrame(frame))
    # Ids with the spaces ingest trims are the users the tables hold; n is honoured.
    spaced = model.predict(pd.DataFrame({"user_id": ["  u0000001 "], "n": [3]}))
    assert served_rows(spaced) == served_rows(model.predict(pd.DataFrame(one)))[:3]


def test_a_history_in_the_request_serves_a_new_user(spark, registered):
    """The champion (EASE on this run's data) scores a brand-new user from the items in the request:
    none of them is recommended back, and every reason is one of them."""
    base, cfg, _ = registered
    model = mlflow.pyfunc.load_model(CHAMPION)
    known = read_table(spark, cfg.path("events")).where("user_id = 'u0000001'").select("item_id").distinct()
    history = sorted(r.item_id for r in known.collect())[:3]
    got = model.predict(pd.DataFrame({"user_id": ["brand-new"], "history": [history]}))
    assert list(got["rank"]) == list(range(1, cfg.recommend.n + 1)) and set(got.source) == {"ease_fold_in"}
    assert not set(got.item_id) & set(history)
    assert {b["item_id"] for row in got.because for b in row} <= set(history)
    # Without a history the same id is unknown: the popular list.
    assert set(model.predict(pd.DataFrame({"user_id": ["brand-new"]})).source) == {"popular_unknown_user"}


# Run in the fresh venv: the champion through a tracking server, as a serving host reaches it.
FRESH_PREDICT = """
import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
got = mlflow.pyfunc.load_model("models:/recsys-spark@champion").predict(pd.DataFrame({"user_id": sys.argv[2:]}))
got["because"] = [b if isinstance(b, list) else None for b in got["because"]]
print(json.dumps({"spark": "pyspark" in sys.modules, "rows": got.to_dict("records")}, default=str))
"""


@pytest.mark.slow
def test_a_fresh_venv_with_only_the_models_requirements_answers_like_the_table(spark, registered, tmp_path):
    """The registered pyfunc's own requirements.txt (no pyspark in it) installed into an empty
    venv (from pip's cache) is enough to load models:/recsys-spark@champion and answer."""
    base, cfg, _ = registered
    needs = Path(mlflow.pyfunc.get_model_dependencies(CHAMPION)).read_text().split()
    assert needs == registry.serving_requirements() and not [n for n in needs if n.startswith("pyspark")], needs
    venv = tmp_path / "serving-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *needs],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, failure(pip)
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", cfg.tracking.uri, "--workers", "1"]
    with server([*command, "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}/health", base):
        users = ["u0000001", "u0000002", "nobody"]
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", FRESH_PREDICT, f"http://127.0.0.1:{port}", *users],
            cwd=tmp_path,
            env=scrubbed_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, failure(done)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["spark"] is False  # not installed there: nothing could import it
    got = pd.DataFrame(answer["rows"])
    assert served_rows(got[got.user_id != "nobody"]) == table_rows(spark, cfg, users[:2])
    assert list(got[got.user_id == "nobody"].source.unique()) == ["popular_unknown_user"]
