"""Erasure that stays in force (issue 27): a forgotten user is never served again, not by the next
`recommend` and not from the model directory; forget leaves no earlier table version holding
them, says when it could not tag the model's run, and works on a root whose quarantine is empty.
The output root records its pseudonymization and key, so a command that disagrees is refused
before it writes raw ids into a pseudonymized table or erases nothing."""

import dataclasses
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from recsys_spark import cli
from recsys_spark.config import PrivacyConfig
from recsys_spark.events.privacy import SETTING, check_root_setting, key_fingerprint
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.forget import forget
from recsys_spark.jobs.runner import JOBS

from support import copied_root, small_config

GONE = "u0000001"


def holding(root: Path, needle: str) -> list[Path]:
    """Files under `root` holding the id `needle`: a Parquet string value equal to it, or the id in
    any other file's bytes (not as the start of a longer id); symlinks are not followed."""
    found = []
    for p in root.rglob("*"):
        if not p.is_file() or p.is_symlink():
            continue
        if p.suffix == ".parquet":
            t = pq.read_table(p)
            hit = any(needle in _strings(v) for c in t.columns for v in c.to_pylist())
        else:
            hit = re.search(rf"{re.escape(needle)}(?!\d)", p.read_bytes().decode("latin-1")) is not None
        if hit:
            found.append(p)
    return found


def _strings(value: object) -> set[str]:
    """Every string inside a Parquet value (lists and structs: `because` holds item ids)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


@pytest.fixture(scope="module")
def forgotten(spark, trained, tmp_path_factory):
    """A copy of the shared trained root (tracking off): recommend once, forget GONE, recommend again."""
    cfg = copied_root(trained[0], tmp_path_factory.mktemp("erasure") / "out")
    JOBS["recommend"](spark, cfg)
    before = {
        t: read_table(spark, cfg.path(t)).where(F.col("user_id") == GONE).count() for t in ("events", "recommendations")
    }
    result = forget(spark, cfg, [GONE])
    JOBS["recommend"](spark, cfg)  # the next scheduled run
    return cfg, before, result


def test_the_next_recommend_serves_a_forgotten_user_nothing(spark, forgotten):
    cfg, before, result = forgotten
    assert before["recommendations"] == cfg.recommend.n and before["events"] > 0
    recs = read_table(spark, cfg.path("recommendations"))
    assert recs.where(F.col("user_id") == GONE).count() == 0
    assert recs.select("user_id").distinct().count() > 100  # everyone else is served
    # Asked for by name beside another user: the other gets their list, the forgotten user nothing.
    asked = dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, users=[GONE, "u0000002"]))
    JOBS["recommend"](spark, asked)
    today = read_table(spark, cfg.path("recommendations")).where(F.col("run_date") == F.current_date())
    assert {r.user_id for r in today.where(F.col("user_id").isin(GONE, "u0000002")).collect()} == {"u0000002"}


def test_the_model_directory_and_earlier_versions_no_longer_hold_the_user(spark, forgotten):
    cfg, _, result = forgotten
    root = cfg.output.root
    assert result.model_users_removed == 1 and result.versions_removed >= 1
    model = f"{root}/model"
    assert spark.read.parquet(f"{model}/users").where(F.col("user_id") == GONE).count() == 0
    idx = {r.user_idx for r in spark.read.parquet(f"{model}/users").collect()}
    assert {r.id for r in spark.read.parquet(f"{model}/als/userFactors").collect()} <= idx
    assert {r.user_idx for r in spark.read.parquet(f"{model}/seen").select("user_idx").distinct().collect()} <= idx
    # Every file under the root: no table, kept version, model part or staging leftover holds the id
    # (the raw input is the caller's: it holds it still, and every later ingest leaves it out).
    leaks = [p for p in holding(Path(root), GONE) if "raw" not in p.relative_to(root).parts]
    assert not leaks, leaks[:5]
    assert holding(Path(root) / "raw", GONE)


def test_forget_with_tracking_off_says_the_models_run_was_not_tagged(forgotten):
    _, _, result = forgotten
    assert result.model_run is not None and not result.model_run_tagged
    text = "\n".join(result.lines())
    assert (
        "was NOT tagged trained_on_erased_data (tracking is off" in text
        and " tagged trained_on_erased_data=true" not in text
    )


def test_forget_on_a_root_whose_quarantine_is_empty(spark, tmp_path):
    """A clean input leaves a quarantine table with no rows (no Parquet file at all): forget
    crashed there with UNABLE_TO_INFER_SCHEMA, so erasure was impossible on good data."""
    cfg = small_config(str(tmp_path / "out"))
    schema = "user_id string, item_id string, event_date date"
    write_table(spark.createDataFrame([], schema), cfg.path("quarantine"), "event_date")
    write_table(
        spark.createDataFrame([(GONE, "i1", None), ("u2", "i2", None)], schema).withColumn(
            "event_date", F.current_date()
        ),
        cfg.path("events"),
        "event_date",
    )
    result = forget(spark, cfg, [GONE])
    assert result.rows_removed == {"events": 1, "quarantine": 0}
    assert [r.user_id for r in read_table(spark, cfg.path("events")).collect()] == ["u2"]


KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"


def command(name, root, *extra):
    return [name, *extra, "--set", f"output.root={root}", "--set", "tracking.enabled=false"]


def test_the_root_records_its_pseudonymization_and_refuses_commands_that_disagree(tmp_path, monkeypatch, capsys):
    """A plain `recommend --users` on a pseudonymized root wrote raw ids beside the pseudonyms, and a
    forget with another key listed a digest that matched nobody and exited 0."""
    root = tmp_path / "out"
    monkeypatch.setenv("RECSYS_PSEUDONYM_KEY", KEY_A)
    check_root_setting(str(root), PrivacyConfig(pseudonymize=True))  # what the root's first command records
    setting = json.loads((root / SETTING).read_text())
    assert setting == {"pseudonymize": True, "key_fingerprint": key_fingerprint(KEY_A.encode())}
    assert KEY_A not in (root / SETTING).read_text()
    on = ("--set", "privacy.pseudonymize=true")

    assert cli.main(command("recommend", root, "--users", "u0000001")) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: output.root {root} holds pseudonymized ids but this command has privacy.pseudonymize=false: "
        "pass --set privacy.pseudonymize=true with the key it was written with in RECSYS_PSEUDONYM_KEY, "
        "or use another output.root"
    )
    assert cli.main(command("lookup", root, "--user", "u0000001")) == 2
    assert "holds pseudonymized ids" in capsys.readouterr().err
    monkeypatch.setenv("RECSYS_PSEUDONYM_KEY", KEY_B)
    assert cli.main(command("forget", root, "--users", "u0000001", *on)) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: the key in RECSYS_PSEUDONYM_KEY (fingerprint {key_fingerprint(KEY_B.encode())}) is not the one "
        f"output.root {root} was written with (fingerprint {key_fingerprint(KEY_A.encode())}): nothing would match"
    )
    assert not (root / "privacy").exists()  # nothing was listed
    # A plain root refuses a pseudonymizing command the same way.
    plain = tmp_path / "plain"
    check_root_setting(str(plain), PrivacyConfig())
    assert cli.main(command("ingest", plain, *on)) == 2
    assert "holds raw user ids but this command has privacy.pseudonymize=true" in capsys.readouterr().err


def test_a_malformed_line_is_matched_by_the_id_as_a_word_in_its_text(spark, tmp_path):
    """An unparseable raw line of the user stayed in the quarantine through forget and every later
    ingest: erasure matched the parsed user column, which is null there."""
    cfg = small_config(str(tmp_path / "out"))
    rows = [
        (None, '{"user_id": "u0000001", "item_id": "i1", "ts": 2026-01-0', "malformed_row"),
        (None, "u0000001;i2;view;garbled", "malformed_row"),
        (None, '{"user_id": "u00000012", "item_id": "i1", "ts": ', "malformed_row"),  # another user: stays
        ("u0000001", None, "unknown_event_type"),
        ("u2", None, "unknown_event_type"),
    ]
    df = spark.createDataFrame(rows, "user_id string, _corrupt_record string, _reason string")
    write_table(df.withColumn("parsed_event_date", F.lit("unparsed")), cfg.path("quarantine"), "parsed_event_date")
    result = forget(spark, cfg, [GONE])
    assert result.rows_removed == {"quarantine": 3} and result.unmatchable_lines == 0
    left = read_table(spark, cfg.path("quarantine")).select("user_id", "_corrupt_record").collect()
    assert sorted(map(tuple, left), key=str) == sorted([(None, rows[2][1]), ("u2", None)], key=str)
