"""MLflow tracking against real stores: a temporary SQLite file and a real `mlflow server`."""

import argparse
import base64
import http.server
import socket
import subprocess
import sys
import threading
import time

import mlflow
import pytest

from recsys_spark.config import Config, load_config
from recsys_spark.errors import RecsysError
from recsys_spark.mlops import tracking
from recsys_spark.mlops.compare import compare_runs

from support import BIN, cli, free_port, mlflow_state, scrubbed_env, server


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite tracking store; the global MLflow state is restored afterwards."""
    with mlflow_state():
        yield f"sqlite:///{tmp_path}/mlflow.db"


def test_secret_looking_keys_are_redacted():
    cfg = load_config(
        None,
        [
            "spark.conf.spark.hadoop.fs.s3a.secret.key=hunter2",
            "spark.conf.spark.hadoop.fs.s3a.access.key=AKIA1",
            "spark.conf.spark.sql.shuffle.partitions=4",
        ],
    )
    params = tracking.config_params(cfg)
    assert params["spark.conf.spark.hadoop.fs.s3a.secret.key"] == "***"
    assert params["spark.conf.spark.hadoop.fs.s3a.access.key"] == "***"
    assert params["spark.conf.spark.sql.shuffle.partitions"] == "4"
    assert params["als.rank"] == "32"
    assert "hunter2" not in str(tracking.redact_nested(cfg.to_dict()))


def test_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(Config()) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert tracking.tracking_uri(Config()) == "http://example.invalid:5000"
    assert tracking.tracking_uri(load_config(None, ["tracking.uri=sqlite:///x.db"])) == "sqlite:///x.db"


def test_failed_job_marks_its_run_and_parent_failed(store):
    cfg = load_config(None, [f"tracking.uri={store}", "tracking.experiment=fail"])
    tracking.start(cfg)
    with pytest.raises(RecsysError):
        with tracking.tracked_run(cfg, "pipeline") as parent:
            with tracking.tracked_run(cfg, "ingest", nested=True):
                raise RecsysError("input path not found: /nowhere")
    runs = mlflow.search_runs(experiment_names=["fail"]).set_index("tags.job")
    assert runs.loc["pipeline", "status"] == runs.loc["ingest", "status"] == "FAILED"
    assert runs.loc["ingest", "tags.mlflow.parentRunId"] == parent
    assert runs.loc["ingest", "tags.error"] == "RecsysError: input path not found: /nowhere"


def _run(name: str, rank: str, ndcg: float) -> str:
    with mlflow.start_run(run_name=name, tags={"job": "pipeline"}) as r:
        mlflow.log_params({"chosen.rank": rank, "split.method": "temporal"})
        mlflow.log_metrics({"ndcg_at_10": ndcg, "rows_clean": 1000.0})
        return r.info.run_id


def test_compare_lists_runs_sorted_by_a_metric(store):
    cfg = load_config(None, [f"tracking.uri={store}", "tracking.experiment=cmp"])
    tracking.start(cfg)
    a, b = _run("a", "8", 0.1), _run("b", "16", 0.25)
    args = argparse.Namespace(
        runs=None,
        last=10,
        job="pipeline",
        params="chosen.rank",
        metrics="ndcg_at_10,rows_clean",
        sort_by="ndcg_at_10",
        format="csv",
    )
    lines = compare_runs(cfg, args).splitlines()
    assert lines[0] == "run_id,run_name,status,start_time,chosen.rank,ndcg_at_10,rows_clean"
    assert lines[1].startswith(f"{b},b,FINISHED,") and lines[1].endswith(",16,0.25,1000.0")
    assert lines[2].startswith(f"{a},a,FINISHED,") and lines[2].endswith(",8,0.1,1000.0")
    args.format, args.runs = "markdown", a
    md = compare_runs(cfg, args).splitlines()
    assert md[0] == "| run_id | run_name | status | start_time | chosen.rank | ndcg_at_10 | rows_clean |"
    assert len(md) == 3 and md[2].endswith("| 8 | 0.1000 | 1000 |")
    args.runs = "nope"
    with pytest.raises(RecsysError, match="run\\(s\\) not found in experiment 'cmp': nope"):
        compare_runs(cfg, args)


def test_unreachable_server_fails_fast_naming_the_uri():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        t0 = time.perf_counter()
        with pytest.raises(RecsysError, match=f"MLflow tracking server http://127.0.0.1:{port} is not reachable"):
            tracking.check_reachable(f"http://127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 10


def test_cli_fails_before_spark_when_the_server_is_unreachable(tmp_path):
    out = cli("ingest", "--set", "tracking.uri=http://127.0.0.1:9", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert "error: MLflow tracking server http://127.0.0.1:9 is not reachable" in out.stderr
    assert "log4j" not in out.stderr  # no JVM was started


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    store = [
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/server.db",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
    ]
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), *store, "--workers", "1"]
    uri = f"http://127.0.0.1:{port}"
    with server(cmd, f"{uri}/health", cwd=tmp_path), mlflow_state():
        yield uri


@pytest.mark.slow
def test_a_run_over_http_reads_back(mlflow_server):
    cfg = load_config(
        None, [f"tracking.uri={mlflow_server}", "tracking.experiment=http", "spark.conf.spark.x.password=pw"]
    )
    tracking.start(cfg)
    with tracking.tracked_run(cfg, "pipeline") as parent:
        tracking.log_config(cfg, "local[2]")
        with tracking.tracked_run(cfg, "train", nested=True):
            tracking.log_metrics({"ndcg_at_10": 0.2, "baseline_ndcg_at_10": 0.1})
            tracking.log_bytes(b"metric,als,baseline\n", "eval/metrics.csv")
    runs = mlflow.search_runs(experiment_names=["http"]).set_index("tags.job")  # run names carry the date
    assert runs.loc["train", "metrics.ndcg_at_10"] == 0.2
    assert runs.loc["train", "tags.mlflow.parentRunId"] == parent
    assert runs.loc["pipeline", "params.spark_master"] == "local[2]"
    assert runs.loc["pipeline", "params.spark.conf.spark.x.password"] == "***"
    client = mlflow.MlflowClient()
    assert [a.path for a in client.list_artifacts(runs.loc["train", "run_id"], "eval")] == ["eval/metrics.csv"]
    resolved = mlflow.artifacts.load_text(f"runs:/{parent}/config/resolved.yaml")
    assert "experiment: http" in resolved and "pw" not in resolved


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_two_first_runs_on_a_new_sqlite_store_do_not_race(tmp_path):
    """MLflow creates a new store's tables on first use; without the lock two processes at once failed
    (3 of 3 tries)."""
    code = (
        "import sys; from recsys_spark.mlops import tracking; from recsys_spark.config import load_config; "
        "tracking.start(load_config(None, ['tracking.uri=sqlite:///' + sys.argv[1]]))"
    )
    env = scrubbed_env()
    for i in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(tmp_path / f"new{i}.db")], stderr=subprocess.PIPE, text=True, env=env
            )
            for _ in range(2)
        ]
        errors = [p.communicate(timeout=300)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors


def test_credentials_in_uris_are_hidden_in_params():
    from recsys_spark.config import load_config

    params = tracking.config_params(
        load_config(
            None, ["tracking.uri=https://alice:s3cret@mlflow.example.com", "input.path=s3a://KEY:SECRET@bucket/raw"]
        )
    )
    assert params["tracking.uri"] == "https://***@mlflow.example.com" and params["input.path"] == "s3a://***@bucket/raw"


def test_secrets_are_redacted_wherever_the_key_names_them():
    """Only a key's last dotted part was read: Azure account keys, SAS tokens, passwd and auth
    settings reached the params and config/resolved.yaml in clear."""
    secret = {
        "spark.conf.spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "AZKEY",
        "spark.conf.spark.hadoop.fs.azure.sas.container.acct.blob.core.windows.net": "SASTOKEN",
        "spark.conf.spark.hadoop.javax.jdo.option.ConnectionPasswd": "PW1",
        "spark.conf.spark.authenticate.secret": "PW2",
        "spark.conf.spark.hadoop.fs.gs.auth.service.account.json.keyfile": "/k.json",
        "spark.conf.spark.hadoop.fs.s3a.session.token": "TOK",
    }
    plain = {
        "spark.conf.spark.sql.shuffle.partitions": "4",
        "spark.conf.spark.hadoop.fs.azure.account.oauth.provider.type": "ClientCredsTokenProvider",
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in {**secret, **plain}.items()])
    params = tracking.config_params(cfg)
    assert {k: params[k] for k in secret} == dict.fromkeys(secret, "***")
    assert {k: params[k] for k in plain} == plain
    nested = str(tracking.redact_nested(cfg.to_dict()))
    assert not [v for v in secret.values() if v in nested]
    # A SAS token in a value (a URI's query string) is hidden too.
    sas = "abfss://c@acct.dfs.core.windows.net/raw?sv=2022-11-02&sig=Zm9vYmFy%3D&se=2027-01-01"
    assert tracking.redact({"input.path": sas})["input.path"] == (
        "abfss://***@acct.dfs.core.windows.net/raw?sv=2022-11-02&sig=***&se=2027-01-01"
    )


class _Health(http.server.BaseHTTPRequestHandler):
    """/health answers 200 only to basic auth alice:pw (as an authenticating proxy in front of MLflow)."""

    def do_GET(self):
        ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"alice:p@ss").decode()
        self.send_response(200 if ok and self.path == "/health" else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_credentialed_tracking_uri_passes_the_reachability_check():
    """http://user:pw@host:port failed the pre-check (urllib cannot open such a URL) with the server up."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        port = httpd.server_address[1]
        tracking.check_reachable(f"http://alice:p%40ss@127.0.0.1:{port}")
        with pytest.raises(RecsysError) as e:
            tracking.check_reachable(f"http://alice:wrong@127.0.0.1:{port}")
        httpd.shutdown()
    assert str(e.value).startswith(f"MLflow tracking server http://***@127.0.0.1:{port} is not reachable (")
    assert "wrong" not in str(e.value)
