"""The run report (one self-contained HTML page per pipeline run, logged to MLflow), checked in a
real headless Chromium; and the MLflow UI itself, served by a real `mlflow server` on 127.0.0.1,
showing the pipeline run with its nested stage runs."""

import datetime as dt
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from recsys_spark import cli
from recsys_spark.jobs.runner import PIPELINE
from recsys_spark.mlops import report

from browser import page
from support import BIN, REPO, failure, free_port, mlflow_state, server, without_pyspark

SHOTS = REPO / "output" / "screenshots"  # kept by CI as artifacts
SECTIONS = [
    "Summary",
    "Compared with the previous run",
    "Stage seconds",
    "ALS (and EASE) vs the popularity baseline",
    "Tuning trials",
    "Retention by cohort",
    "Stickiness over time",
    "Drift since the previous lists",
    "Effect of recommendations",
    "Recommendation quality by cohort",
    "Quarantine by reason",
]


@pytest.fixture(scope="module")
def pipeline(pipeline_run):
    """The suite's tracked `recsys-spark run`: its folder, config, pipeline run id and summary."""
    cfg = pipeline_run.cfg
    client = mlflow.MlflowClient(cfg.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("recsys-spark").experiment_id], "tags.job = 'pipeline'")
    assert len(runs) == 1, runs
    return pipeline_run.base, cfg, runs[0].info.run_id, pipeline_run


class Tables(HTMLParser):
    """Every <table> of a page as {header cells: body rows of cell texts}."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[tuple[str, ...], list[list[str]]] = {}
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.found[tuple(self.rows[0])] = self.rows[1:]
            self.rows = []


def tables(text: str) -> dict[tuple[str, ...], list[list[str]]]:
    parser = Tables()
    parser.feed(text)
    return parser.found


def report_path(pipeline) -> Path:
    base, cfg, run_id, result = pipeline
    path = Path(cfg.output.root) / "reports" / f"report-{run_id}.html"
    assert f"report: {path} (and report.html of MLflow run {run_id})" in result.stdout, result.stdout[-2000:]
    return path


def test_the_pipeline_writes_a_self_contained_report_and_logs_it(pipeline):
    base, cfg, run_id, result = pipeline
    text = report_path(pipeline).read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings == SECTIONS
    # The effect needs follow-up data that no run has when it ends: its section says how to measure it.
    effect = text.split("<h2>Effect of recommendations</h2>")[1].split("<h2>")[0]
    served = result.stages["recommend"].get("run_id")
    assert f"run `recsys-spark effect --run-id {served}`" in effect, effect
    rest = text.replace(effect, "")
    assert 'class="missing"' not in rest and "class=missing" not in rest  # every other section had its data
    assert "<script" not in text and not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched
    assert (
        len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', text)) == 4
    )  # by history, heatmap, curves, stickiness
    # The numbers are the run's: rows, ALS vs baseline, the quarantine by reason.
    ingest = result.stages["ingest"]
    assert f"<td>{ingest['rows_read']:,}</td>" in text and f"<td>{ingest['rows_quarantined']:,}</td>" in text
    found = tables(text)
    metrics = {row[0]: row[1:] for row in found[("metric", "als", "baseline", "ease")]}  # model.family auto
    quality, ease = result.stages["train"]["quality"], result.stages["train"]["ease"]
    assert metrics["ndcg_at_10"] == [
        f"{quality['ndcg_at_10']:.4f}",
        f"{quality['baseline_ndcg_at_10']:.4f}",
        f"{ease['ease_ndcg_at_10']:.4f}",
    ]
    assert {r: int(n.replace(",", "")) for r, n in found[("reason", "rows")]} == ingest["quarantined_by_reason"]
    # What it trained on, what the registry did, the chosen trial, and no earlier run to compare with.
    train = result.stages["train"]
    assert f"<p>model: {train['registry']}</p>" in text
    validation = ", ".join(f"{k.removeprefix('validation_')} {v:.4f}" for k, v in train["validation"].items())
    assert f"<p>serves: {train['family'].upper()}, the better family on validation ({validation})</p>" in text
    assert re.search(rf"data {re.escape(cfg.input_path)} &middot; {ingest['rows_clean']:,} clean events, ", text)
    assert "no earlier pipeline run in this experiment" in text
    trials = found[next(h for h in found if h[:2] == ("chosen", "trial"))]
    assert [r[0] for r in trials].count("yes") == 1 and text.count('<tr class="chosen">') == 1
    stages = [row[0] for row in found[("stage", "seconds")]]
    assert stages[: len(PIPELINE)] == [name for name, _ in PIPELINE]  # in the order they ran, then train's steps
    assert [row[1] for row in found[("stage", "seconds")]][1] == f"{ingest['seconds']:.1f}"
    # The same page is the run's MLflow artifact.
    mlflow.set_tracking_uri(cfg.tracking.uri)
    logged = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report.html", dst_path=str(base / "dl"))
    assert Path(logged).read_text() == text


def test_the_report_renders_in_headless_chromium(pipeline):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with page(1400, 900) as (pg, seen):
        pg.goto(report_path(pipeline).as_uri(), wait_until="load")
        widths = pg.eval_on_selector_all("img", "imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth])")
        page_width = pg.evaluate("document.documentElement.scrollWidth")
        pg.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    assert len(widths) == 4 and all(done and w > 0 for _, done, w in widths), widths
    assert page_width <= 1400  # no sideways scrolling in a 1,400 px window: wide tables scroll inside
    assert seen.errors == [] and seen.remote_requests == [], seen
    assert (SHOTS / "report.png").stat().st_size > 10_000


def test_report_command_for_a_run_id_and_its_errors(pipeline, tmp_path, capsys):
    base, cfg, run_id, _ = pipeline
    sets = ["--set", f"tracking.uri={cfg.tracking.uri}", "--set", f"output.root={cfg.output.root}"]
    assert cli.main(["report", *sets]) == 0  # the latest pipeline run, to <output.root>/reports
    assert f"report: {report_path(pipeline)} (and report.html of MLflow run {run_id})" in capsys.readouterr().out
    out = tmp_path / "again.html"
    assert cli.main(["report", *sets, "--run-id", run_id, "--out", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    assert re.findall(r"<h2>(.*?)</h2>", out.read_text()) == SECTIONS
    assert cli.main(["report", *sets, "--run-id", "0" * 32]) == 2
    assert f"--run-id {'0' * 32}: no such run" in capsys.readouterr().err
    client = mlflow.MlflowClient()
    stage = client.search_runs(
        [client.get_run(run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}' and tags.job = 'train'"
    )[0]
    assert cli.main(["report", *sets, "--run-id", stage.info.run_id]) == 2
    assert f"--run-id {stage.info.run_id} is a 'train' run; the report takes a pipeline run" in capsys.readouterr().err


def test_report_and_compare_commands_run_on_a_host_without_pyspark(pipeline, tmp_path):
    base, cfg, run_id, _ = pipeline
    sets = ["--set", f"tracking.uri={cfg.tracking.uri}", "--set", f"output.root={cfg.output.root}"]
    out = tmp_path / "no-spark.html"
    report = ["report", *sets, "--run-id", run_id, "--out", str(out)]
    done = without_pyspark(f"from recsys_spark import cli; sys.exit(cli.main({report!r}))", cwd=base)
    assert done.returncode == 0, failure(done)
    assert re.findall(r"<h2>(.*?)</h2>", out.read_text()) == SECTIONS
    compare = ["compare", *sets, "--format", "csv", "--metrics", "ndcg_at_10"]
    done = without_pyspark(f"from recsys_spark import cli; sys.exit(cli.main({compare!r}))", cwd=base)
    assert done.returncode == 0, failure(done)
    ndcg = mlflow.MlflowClient(cfg.tracking.uri).get_run(run_id).data.metrics["ndcg_at_10"]
    table = pd.read_csv(io.StringIO(done.stdout)).set_index("run_id")
    assert table.loc[run_id, "ndcg_at_10"] == pytest.approx(ndcg), done.stdout


@pytest.mark.slow
def test_the_mlflow_ui_shows_the_pipeline_run_and_its_stage_runs(pipeline):
    base, cfg, run_id, _ = pipeline
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", cfg.tracking.uri]
    with server(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        f"http://127.0.0.1:{port}/health",
        base,
    ):
        experiment = mlflow.MlflowClient(cfg.tracking.uri).get_run(run_id).info.experiment_id
        stages = [name for name, _ in PIPELINE]
        client = mlflow.MlflowClient(cfg.tracking.uri)
        run = client.get_run(run_id)
        assert run.info.run_name == f"pipeline generated {_day(run.info.start_time)}"
        # The Dataset and Models columns: train's input logged on the pipeline run, its pyfunc as the output.
        (given,) = run.inputs.dataset_inputs
        assert given.dataset.name == "raw" and given.dataset.digest and cfg.input_path in given.dataset.source
        train = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}' and tags.job = 'train'")[0]
        (model,) = client.search_logged_models([experiment], filter_string=f"source_run_id = '{train.info.run_id}'")
        assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
        with page(1600, 1000) as (pg, seen):
            pg.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs", wait_until="load")  # "Training runs"
            parent = pg.get_by_role("link", name=run.info.run_name, exact=True).first
            parent.wait_for(timeout=60_000)
            for name in stages:  # the stage runs are collapsed under their parent until its row is expanded
                assert not pg.get_by_role("link", name=name, exact=True).count(), name
            pg.locator("[role=row]", has=parent).first.get_by_role("button").first.click()
            for name in stages:
                pg.get_by_role("link", name=name, exact=True).first.wait_for(timeout=30_000)
            # The Dataset column names the input and its digest, on the pipeline row and the train row.
            shown = pg.get_by_text(f"raw ({given.dataset.digest})", exact=True)
            shown.first.wait_for(timeout=30_000)
            assert shown.count() == 2
            SHOTS.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(SHOTS / "mlflow-experiment.png"), full_page=True)
            # The run's artifacts show the report, rendered inside the UI.
            pg.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs/{run_id}/artifacts", wait_until="load")
            pg.get_by_text("report.html", exact=True).first.click(timeout=30_000)
            pg.frame_locator("iframe").first.get_by_text("Quarantine by reason").wait_for(timeout=30_000)
            pg.screenshot(path=str(SHOTS / "mlflow-report-artifact.png"))
        assert seen.remote_requests == [], seen.remote_requests


def _day(start_ms: int) -> str:
    return f"{dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC):%Y-%m-%d}"


def test_the_report_compares_with_the_previous_run_and_shows_new_items(tmp_path):
    """Hand-logged runs in a fresh store (no Spark): the numbers beside the previous run's, flagged
    when it read another input; the items stage's section; the chosen trial by its parameters."""
    with mlflow_state():
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
        mlflow.set_experiment("r")
        with mlflow.start_run(tags={"job": "pipeline"}) as before:
            mlflow.log_params({"input.path": "data/a"})
            mlflow.log_metrics({"rows_read": 100, "ndcg_at_10": 0.25})
        with mlflow.start_run(tags={"job": "pipeline"}) as now:
            mlflow.log_params({"input.path": "data/b", "chosen.rank": "8", "chosen.reg_param": "0.1"})
            mlflow.log_metrics({"rows_read": 120, "ndcg_at_10": 0.2})
            with mlflow.start_run(nested=True, tags={"job": "train", "model_registry": "m v2 registered"}):
                trials = "trial,rank,reg_param,state,ndcg_at_10\n1,8,0.1,complete,0.3\n2,4,0.1,complete,0.35\n"
                mlflow.log_text(trials, "eval/tuning.csv")
            with mlflow.start_run(nested=True, tags={"job": "items"}):
                mlflow.log_metrics({"items_with_text": 50, "new_items": 7, "new_items_validation_text_knn_k_20": 0.125})
        data = report.gather(mlflow.get_run(now.info.run_id))
        text = report.render(data)
    assert data.previous.info.run_id == before.info.run_id
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings[:2] == ["Summary", "Compared with the previous run"] and "New items" in headings
    found = tables(text)
    assert found[("", "this run", "previous", "change")][:1] == [["rows read", "120", "100", "+20"]]
    assert "it read another input (data/a, this run data/b)" in text
    assert found[("", "value")][-2:] == [["items with text", "50"], ["new items (placed from their text)", "7"]]
    assert found[("map", "NDCG")] == [["text_knn_k_20", "0.1250"]]
    # Trial 1 has the chosen parameters, though trial 2 scored higher on validation.
    assert [r[:2] for r in found[("chosen", "trial", "rank", "reg_param", "state", "ndcg_at_10")]] == [
        ["yes", "1"],
        ["", "2"],
    ]
    assert "<p>model: m v2 registered</p>" in text
