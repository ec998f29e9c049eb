"""The served model: registered in MLflow with a champion alias, loaded as a pyfunc without Spark,
and served by a real `mlflow models serve` process on 127.0.0.1."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from pyspark.sql import functions as F

from recsys_spark import tracking
from recsys_spark.jobs.runner import JOBS
from recsys_spark.tables import read_table

CHAMPION = "models:/recsys-spark@champion"


@pytest.fixture(scope="module")
def registered(spark, trained, tmp_path_factory):
    """The trained fixture's events trained again with tracking on (so the model is registered), and recommended."""
    cfg0, _ = trained
    base = tmp_path_factory.mktemp("serving")
    cfg = dataclasses.replace(
        cfg0,
        output=dataclasses.replace(cfg0.output, root=str(base / "out")),
        tracking=dataclasses.replace(cfg0.tracking, uri=f"sqlite:///{base}/mlflow.db"),
    )
    shutil.copytree(cfg0.path("events"), cfg.path("events"))
    cwd = os.getcwd()
    os.chdir(base)  # MLflow's default artifact root ./mlruns lands here
    try:
        tracking.start(cfg)
        with tracking.tracked_run(cfg, "train"):
            result = JOBS["train"](spark, cfg)
        JOBS["recommend"](spark, cfg, run_id="served")
    finally:
        os.chdir(cwd)
    return base, cfg, result


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
    base, cfg, result = registered
    assert "is now champion" in result.registry
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
    assert set(popular.source) == {"popular"} and list(popular["rank"]) == list(range(1, cfg.recommend.n + 1))


def test_a_worse_model_does_not_take_the_alias(spark, registered):
    base, cfg, _ = registered
    worse = dataclasses.replace(
        cfg,
        tune=dataclasses.replace(cfg.tune, enabled=False),
        als=dataclasses.replace(cfg.als, rank=1, max_iter=1, reg_param=50.0),
    )
    before = mlflow.MlflowClient().get_model_version_by_alias("recsys-spark", "champion").version
    cwd = os.getcwd()
    os.chdir(base)
    try:
        with tracking.tracked_run(worse, "train"):
            out = JOBS["train"](spark, worse)
    finally:
        os.chdir(cwd)
    assert f"champion stays v{before}" in out.registry
    assert mlflow.MlflowClient().get_model_version_by_alias("recsys-spark", "champion").version == before


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_the_table(spark, registered):
    base, cfg, _ = registered
    port = free_port()
    bin_dir = str(
        Path(sys.executable).parent
    )  # mlflow starts uvicorn by name: the venv must be on PATH, as after `. .venv/bin/activate`
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg.tracking.uri, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            CHAMPION,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=base,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                time.sleep(1)
        users = ["u0000001", "u0000002"]
        body = json.dumps({"dataframe_split": {"columns": ["user_id"], "data": [[u] for u in users]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
        got = pd.DataFrame(answer["predictions"])
        assert served_rows(got) == table_rows(spark, cfg, users)
    finally:
        server.terminate()
        server.wait(timeout=30)
