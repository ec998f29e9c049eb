import dataclasses
import datetime as dt

import pytest
import yaml

from recsys_spark.config import Config, ConfigError, flatten, load_config

DEMO_KEYS = [
    "als.rank=11",
    "als.max_iter=5",
    "als.reg_param=0.047",
    "als.alpha=3.0",
    "als.confidence=log",
    "tune.trials=5",
    "recommend.holdout.fraction=0.1",
    "recommend.holdout.salt=recsys-demo-holdout-1",
]


def test_conf_local_yaml_is_the_defaults_but_its_demo_keys():
    assert load_config("conf/local.yaml") == load_config(None, DEMO_KEYS)
    assert load_config("conf/local.yaml") != Config()


def test_conf_local_yaml_lists_every_key_of_the_config():
    """ "Lists every default": each dataclass field is a key of conf/local.yaml, and nothing else is."""

    def fields(obj, prefix=""):
        out = set()
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            out |= fields(v, f"{prefix}{f.name}.") if dataclasses.is_dataclass(v) else {prefix + f.name}
        return out

    def keys(d, obj, prefix=""):
        out = set()
        for k, v in d.items():
            sub = getattr(obj, k, None)
            nested = isinstance(v, dict) and dataclasses.is_dataclass(sub)
            out |= keys(v, sub, f"{prefix}{k}.") if nested else {prefix + k}
        return out

    with open("conf/local.yaml") as f:
        listed = keys(yaml.safe_load(f), Config())
    assert sorted(fields(Config()) - listed) == [] and sorted(listed - fields(Config())) == []


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None,
        [
            "ingest.max_bad_fraction=0.05",
            "generate.start_date=2026-02-02",
            "spark.conf.spark.sql.adaptive.enabled=false",
        ],
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
        # value checks at load (config.validate), before any JVM starts
        ("als.rank=0", "als.rank must be a positive integer, got 0; try 32"),
        ("als.reg_param=-0.1", "als.reg_param must be >= 0, got -0.1; try 0.05"),
        ("train.k=0", "train.k must be a positive integer, got 0; try 10"),
        ("recommend.n=-1", "recommend.n must be a positive integer, got -1; try 10"),
        ("spark.shuffle_partitions=0", "spark.shuffle_partitions must be a positive integer, got 0"),
        ("ingest.max_bad_fraction=1.5", "ingest.max_bad_fraction must be between 0 and 1, got 1.5"),
        ("split.test_fraction=1", "split.test_fraction must be strictly between 0 and 1, got 1.0"),
        ("tune.space.rank=[16, 0]", "tune.space.rank[1] must be a positive integer, got 0"),
        (
            "tune.space.rank=[64, 8]",
            "tune.space.rank must be [low, high] with low <= high, or [value] to fix it; got [64, 8]",
        ),
        ("tune.space.alpha=[]", "tune.space.alpha must be [low, high] with low <= high"),
        ("tune.space.reg_param=[0, 1]", "tune.space.reg_param[0] must be > 0, got 0.0"),
        ("tune.space.confidence=[]", "tune.space.confidence is empty"),
        ("tune.space.confidence=[square]", "tune.space.confidence[0]: expected one of ['linear', 'log'], got 'square'"),
        ("tune.trials=0", "tune.trials must be a positive integer, got 0; try 12"),
        ("tune.rung_fraction=0", "tune.rung_fraction must be above 0"),
        ("tune.reduction_factor=1", "tune.reduction_factor must be an integer >= 2, got 1"),
        ("tune.alpha=[5.0]", "config key 'tune.alpha' is now tune.space.alpha ([low, high])"),
        ("ease.enabled=true", "config key 'ease.enabled' is now model.family (auto, als or ease): auto fits EASE"),
        ("model.family=both", "model.family: expected one of ['auto', 'als', 'ease'], got 'both'"),
        ("als.confidence=sqrt", "als.confidence: expected one of ['linear', 'log'], got 'sqrt'"),
        (
            "input.timestamp_format=[unix_seconds, yyyy-MM-dd]",
            "input.timestamp_format ['unix_seconds', 'yyyy-MM-dd'] mixes unix_seconds/unix_millis",
        ),
        ("als.checkpoint_interval=0", "als.checkpoint_interval must be a positive integer or -1 (never), got 0"),
        ("interactions.half_life_days=0", "interactions.half_life_days must be > 0, got 0.0"),
        ("recommend.users=[]", "recommend.users is an empty list"),
        (
            "retention.event_types=[refund]",
            "retention.event_types has unknown event type(s) ['refund']; known: ['cart', 'click', 'purchase', 'view']",
        ),
        (
            "input.event_type=purchase",  # the default columns map event_type too
            "input.event_type='purchase' (one event type for every row) and input.columns.event_type='event_type' "
            "(a source column) are both set: drop event_type from input.columns",
        ),
        (
            "input.columns={user_id: a, item_id: b, event_ts: c}",
            "input.columns has no 'event_type' source column: map one, or set input.event_type",
        ),
        (
            "input.columns={user_id: a, event_type: e, event_ts: c}",
            "input.columns must map 'item_id' to a source column",
        ),
        (
            "input.columns={user_id: a, item_id: b, event_type: e, event_ts: c, rating: r}",
            "input.columns has unknown canonical column(s) ['rating']",
        ),
        ("output.root=/", "output.root '/' is not a folder of its own"),
        ("output.root=", "output.root: expected a string"),
        ("events.weights={}", "events.weights is empty"),
        (
            "ingest.rules=[{reason: x, when: \"reflect('java.lang.System', 'exit', 1) = 1\"}]",
            "ingest.rules[0] (x): reflect() is not allowed in a rule",
        ),
        (
            "ingest.rules=[{reason: x, when: \"JAVA_METHOD ('java.lang.Runtime', 'x') IS NULL\"}]",
            "ingest.rules[0] (x): JAVA_METHOD() is not allowed",
        ),
        ("spark.master=local[x]", "spark.master 'local[x]' is not a Spark master URL: use local[*]"),
        # Start-up recovery deletes the checkpoint dir's run folders: it must never be, or hold, the tables.
        ("spark.checkpoint_dir=output", "spark.checkpoint_dir 'output' is output.root 'output': checkpoint folders"),
        ("spark.checkpoint_dir=./output/", "spark.checkpoint_dir './output/' is output.root 'output'"),
        ("spark.checkpoint_dir=/", "spark.checkpoint_dir '/' holds output.root 'output'"),
        ("input.timezone=Europe/Lndon", "input.timezone 'Europe/Lndon' is not a time zone: use a region id such as"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value)


def test_date_range_must_be_ordered():
    with pytest.raises(ConfigError, match="ingest.date_from 2026-02-02 is after ingest.date_to 2026-02-01"):
        load_config(None, ["ingest.date_from=2026-02-02", "ingest.date_to=2026-02-01"])


def test_every_shipped_config_is_valid():
    from pathlib import Path

    for path in sorted(Path("conf").glob("*.yaml")):
        load_config(path)  # raises on any bad value


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "America/New_York", "+02:00", "GMT+2"])
def test_time_zones_spark_reads_are_accepted(zone):
    assert load_config(None, [f"input.timezone={zone}"]).input.timezone == zone


def test_a_checkpoint_dir_of_its_own_is_accepted(tmp_path):
    cfg = load_config(None, [f"spark.checkpoint_dir={tmp_path}/ckpt", f"output.root={tmp_path}/out"])
    assert cfg.checkpoint_dir == f"{tmp_path}/ckpt"


def test_config_show_prints_every_key_its_value_and_where_it_came_from(tmp_path, capsys):
    # Issue 34, point 4: the resolved config with the source of each value, secrets hidden.
    from recsys_spark import cli

    path = tmp_path / "c.yaml"
    path.write_text("als:\n  rank: 16\ntune:\n  space: {rank: [8, 32]}\n")
    given = ["als.max_iter=7", "spark.conf.spark.hadoop.fs.s3a.secret.key=hunter2", "als.rank=24"]
    assert cli.main(["config", "--show", "--config", str(path), *[a for g in given for a in ("--set", g)]]) == 0
    out = capsys.readouterr().out
    rows = dict(line.split(" = ", 1) for line in out.splitlines())
    assert rows["tune.space.rank"] == f"[8, 32]  [{path}]"
    assert rows["tune.space.alpha"] == "[1.0, 50.0]  [default]"
    assert rows["als.rank"] == "24  [--set]"  # --set wins over the file
    assert rows["als.max_iter"] == "7  [--set]" and rows["als.reg_param"] == "0.05  [default]"
    assert rows["spark.conf.spark.hadoop.fs.s3a.secret.key"] == "***  [--set]" and "hunter2" not in out
    assert rows["input.path"] == "null  [default]" and rows["spark.master"] == "local[*]  [default]"
    assert set(rows) == set(flatten(load_config(path, given).to_dict()))  # every key, once
