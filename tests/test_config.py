import datetime as dt

import pytest

from recsys_spark.config import Config, ConfigError, flatten, load_config


def test_defaults_match_conf_local_yaml():
    assert load_config("conf/local.yaml") == Config()


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None, ["ingest.max_bad_fraction=0.05", "generate.start_date=2026-02-02", "spark.conf.spark.sql.adaptive.enabled=false"]
    )
    assert cfg.ingest.max_bad_fraction == 0.05
    assert cfg.generate.start_date == dt.date(2026, 2, 2)
    # Below a free-form mapping the dotted remainder is one key (Spark conf keys have dots).
    assert cfg.spark.conf == {"spark.sql.adaptive.enabled": "false"}


def test_override_of_int_from_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("generate:\n  events: 1000\n")
    cfg = load_config(p, ["generate.events=2000"])
    assert cfg.generate.events == 2000


def test_rules_are_parsed_into_objects():
    cfg = load_config(None, ["ingest.rules=[{reason: cancelled, when: \"InvoiceNo LIKE 'C%'\"}]"])
    assert cfg.ingest.rules[0].reason == "cancelled"
    assert cfg.ingest.rules[0].when == "InvoiceNo LIKE 'C%'"


@pytest.mark.parametrize(
    "override, message",
    [
        ("ingest.max_bad_fractoin=0.1", "unknown config key 'ingest.max_bad_fractoin'"),
        ("nosuch.key=1", "unknown config key 'nosuch'"),
        ("generate.events=many", "generate.events: expected an integer, got 'many'"),
        ("generate.events=1.5", "generate.events: expected an integer"),
        ("ingest.max_bad_fraction=[1]", "ingest.max_bad_fraction: expected a number"),
        ("input.format=xml", "input.format: expected one of ['parquet', 'csv', 'json'], got 'xml'"),
        ("generate.start_date=yesterday", "generate.start_date: expected a date like 2026-01-31"),
        ("ingest.rules=[{reason: x}]", "missing config key 'ingest.rules[0].when'"),
        ("noequals", "must look like section.key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}
