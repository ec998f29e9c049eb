"""The command line as a user runs it: a real process, its exit code and what it prints."""

import subprocess
import sys

import pytest

TINY = [
    "--set", "spark.master=local[2]", "--set", "spark.shuffle_partitions=2",
    "--set", "generate.events=3000", "--set", "generate.users=200", "--set", "generate.items=80",
    "--set", "generate.days=42", "--set", "spark.conf.spark.ui.enabled=false",
    "--set", "split.test_days=7", "--set", "tune.validation_days=7", "--set", "tune.rank=[4]",
    "--set", "tune.alpha=[5.0]", "--set", "als.max_iter=3",
]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "recsys_spark.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_run_generates_ingests_and_prints_summary(tmp_path):
    out = cli("run", "--set", f"output.root={tmp_path}/out", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "== recsys-spark summary ==" in out.stdout
    assert "rows read" in out.stdout and f"wrote events: {tmp_path}/out/events" in out.stdout
    assert "ALS vs popularity baseline" in out.stdout and "ndcg_at_10" in out.stdout
    assert "rows from als" in out.stdout
    assert "retention of the three largest cohorts (week 1 / week 4, bounded)" in out.stdout
    assert "DAU/MAU, mean over the last 30 days" in out.stdout
    assert (tmp_path / "out" / "retention" / "retention_heatmap.png").exists()
    for table in ("events", "quarantine", "model", "eval/metrics", "recommendations", "retention/cohorts"):
        assert (tmp_path / "out" / table / "_SUCCESS").exists(), table


@pytest.mark.slow
def test_tuning_without_room_before_the_validation_slice_is_a_clear_error(tmp_path):
    out = cli("run", "--set", f"output.root={tmp_path}/out", *TINY, "--set", "tune.validation_days=60", cwd=tmp_path)
    assert out.returncode == 2
    assert "error: tuning has no training data before the validation slice (60 days before the cutoff)" in out.stderr


def test_unknown_key_is_one_line_error_and_exit_2(tmp_path):
    out = cli("ingest", "--set", "ingest.max_bad_fractoin=0.1", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: unknown config key 'ingest.max_bad_fractoin'")


@pytest.mark.slow
def test_missing_input_path_exits_non_zero_naming_it(tmp_path):
    out = cli("ingest", "--set", f"input.path={tmp_path}/nope", *TINY, cwd=tmp_path)
    assert out.returncode == 2
    assert f"error: input path not found: {tmp_path}/nope" in out.stderr
