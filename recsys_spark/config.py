"""Typed, validated configuration loaded from YAML with `--set key=value` overrides.

Every section is a dataclass whose defaults are the local-mode defaults, so a run with no config
file works out of the box. Unknown keys, wrong types, values out of range and inconsistent
combinations are errors that name the dotted key, raised by `load_config` before any JVM starts
(`validate` holds every value check, once).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recsys_spark import names
from recsys_spark.infra.paths import local_path


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it and what was expected."""


@dataclass
class SparkConfig:
    # Ignored under spark-submit: there the master comes from spark-submit's --master.
    master: str | None = "local[*]"
    app_name: str = "recsys-spark"
    shuffle_partitions: int = 8
    driver_memory: str | None = "4g"
    checkpoint_dir: str | None = None  # default: <output.root>/checkpoints
    log_level: str = "WARN"  # Spark's log level with `verbose`
    # false: one progress line per stage and step; Spark's stage bars and non-error log lines are
    # hidden. true (--verbose): Spark's own console output as well.
    verbose: bool = False
    # Native BLAS/LAPACK for MLlib (see recsys_spark/infra/blas.py): auto (the system's, else the
    # cmeel-openblas wheel's), off (Java), or the path of a shared library.
    native_blas: str = "auto"
    blas_threads: int = 1  # OpenBLAS threads per JVM task; Spark already runs one task per core
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class OutputConfig:
    root: str = "output"
    keep_versions: int = 1  # previous versions kept per table (local disk), besides the current one


@dataclass
class GenerateConfig:
    """Synthetic event log: sizes, time window and the behaviour knobs of `events/synthetic.py`."""

    events: int = 300_000
    users: int = 15_000
    items: int = 3_000
    clusters: int = 12
    start_date: dt.date = dt.date(2026, 1, 5)
    days: int = 112
    seed: int = 42
    # Users per generator task; bounds the memory one task needs at any total size.
    users_per_chunk: int = 5_000
    # Fraction of rows deliberately broken (null ids, bad types, NaN values, duplicates), so
    # ingest's quarantine is exercised on the demo data too.
    bad_fraction: float = 0.002


@dataclass
class InputConfig:
    """Where raw events are and how their columns map to the canonical event schema."""

    path: str | None = None  # default: <output.root>/raw, generated when absent
    format: Literal["parquet", "csv", "json"] = "parquet"
    options: dict[str, str] = field(default_factory=dict)  # passed to the Spark reader
    # canonical column -> source column; event_type and value may be omitted.
    columns: dict[str, str] = field(default_factory=lambda: {name: name for name in names.RAW_EVENT_COLUMNS})
    event_type: str | None = None  # constant event type when the source has no such column
    event_type_map: dict[str, str] = field(default_factory=dict)  # source value -> canonical
    # null: cast; a Spark datetime pattern such as "M/d/yyyy H:mm", or a list of them tried in
    # order (the first that parses wins); or unix_seconds/unix_millis.
    timestamp_format: str | list[str] | None = None
    timezone: str = "UTC"  # zone of timestamps written without one

    @property
    def timestamp_formats(self) -> list[str]:
        """`timestamp_format` as a list (empty: cast the column)."""
        fmt = self.timestamp_format
        return [fmt] if isinstance(fmt, str) else list(fmt or [])


@dataclass
class RowRule:
    """A named quarantine rule: rows where the SQL condition `when` is true get `reason`."""

    reason: str
    when: str


@dataclass
class IngestConfig:
    max_bad_fraction: float = 0.5
    future_slack_hours: float = 24.0
    # Events before this date are quarantined as `too_old` (a year 1500 or 1900 is a bad default
    # value, not an event); lower it for older data.
    min_event_date: dt.date = dt.date(1970, 1, 1)
    rules: list[RowRule] = field(default_factory=list)
    date_from: dt.date | None = None
    date_to: dt.date | None = None


@dataclass
class EventsConfig:
    # The valid event types and their implicit-feedback weights.
    weights: dict[str, float] = field(default_factory=lambda: {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0})


@dataclass
class InteractionsConfig:
    """Events -> (user, item, confidence): implicit weights x decay, or the latest explicit rating."""

    mode: Literal["implicit", "explicit"] = "implicit"
    half_life_days: float | None = None  # exponential time decay; null: none
    use_value: bool = False  # implicit: weight x value (a rating, a quantity) instead of weight
    min_value: float | None = None  # drop events whose value is below this (e.g. ratings < 3.5)
    min_user_items: int = 1  # users with fewer distinct items are dropped
    min_item_users: int = 1  # items with fewer distinct users are dropped


@dataclass
class SplitConfig:
    method: Literal["temporal", "random"] = "temporal"
    test_days: int = 14  # temporal: the test horizon right after the cutoff
    cutoff: dt.date | None = None  # temporal: default last event date + 1 - followup_days - test_days
    # temporal: days after the test horizon kept out of evaluation, so retention can observe
    # whether evaluated users came back (recommendation quality by cohort).
    followup_days: int = 7
    test_fraction: float = 0.2  # random: share of each user's interactions held out
    seed: int = 42


StorageLevelName = Literal["MEMORY_AND_DISK", "MEMORY_ONLY", "MEMORY_AND_DISK_SER", "MEMORY_ONLY_SER", "DISK_ONLY"]


@dataclass
class ALSConfig:
    rank: int = 32
    max_iter: int = 10
    reg_param: float = 0.05
    alpha: float = 10.0
    nonnegative: bool = False
    seed: int = 42
    checkpoint_interval: int = 5
    num_user_blocks: int | None = None  # null: the session's default parallelism
    num_item_blocks: int | None = None
    cold_start_strategy: Literal["drop", "nan"] = "drop"
    # Where ALS keeps its in/out blocks and factors between iterations (Spark's default for both
    # is MEMORY_AND_DISK; `make bench` compares the alternatives on this machine).
    intermediate_storage_level: StorageLevelName = "MEMORY_AND_DISK"
    final_storage_level: StorageLevelName = "MEMORY_AND_DISK"
    # Implicit feedback: what ALS's confidence 1 + alpha * x is computed from. linear: x = r (the
    # pair's aggregated weight); log: x = log(1 + r / epsilon), which damps heavy repeat pairs.
    confidence: Literal["linear", "log"] = "linear"
    epsilon: float = 1.0
    # Fit only on pairs whose highest event value (e.g. the rating) is at least this; unlike
    # interactions.min_value, the left-out pairs still count as seen and as relevant in evaluation.
    min_value: float | None = None


@dataclass
class SearchSpace:
    """What the tuner samples. Numeric keys are [low, high], searched on a log scale (one value:
    fixed); `confidence` and `min_value` are lists of choices (null: no threshold). The defaults
    keep the demo short; the dataset configs search wider (rank 8-128, reg_param 1e-3-1, ...)."""

    rank: list[int] = field(default_factory=lambda: [8, 64])
    reg_param: list[float] = field(default_factory=lambda: [0.01, 0.5])
    alpha: list[float] = field(default_factory=lambda: [1.0, 50.0])  # implicit feedback only
    max_iter: list[int] = field(default_factory=lambda: [5, 10])
    confidence: list[Literal["linear", "log"]] = field(default_factory=lambda: ["linear", "log"])  # implicit only
    min_value: list[float | None] = field(default_factory=lambda: [None])  # e.g. [null, 3.0, 3.5] for ratings


FIT_PARAMS = tuple(f.name for f in dataclasses.fields(SearchSpace))  # what tuning may choose, in the ALS config


@dataclass
class SeedPoint:
    """A known-good region the tuner tries right after the configured model (clipped into the
    space); a key left out takes the configured ALS value."""

    rank: int | None = None
    reg_param: float | None = None
    alpha: float | None = None
    max_iter: int | None = None


@dataclass
class TuneConfig:
    """Optuna TPE search; each trial is scored on a validation slice cut from the training period.

    Trials are cheap on purpose: the validation metric is computed on a fixed sample of validation
    users, and a first rung fits on `rung_fraction` of the users for that fraction of the
    iterations; successive halving keeps the best 1/`reduction_factor` of first-rung scores for
    the full fit (rung_fraction 1: no rung).
    """

    enabled: bool = True
    trials: int = 8
    timeout_s: float | None = None  # stop starting trials after this many seconds (null: trials decide)
    seed: int = 42  # sampler seed: the same seed and data give the same trials
    space: SearchSpace = field(default_factory=SearchSpace)
    # Tried after the configured model, before the sampler: Spark ALS's good region on public
    # benchmarks (rank 32-64, reg_param 0.1-0.2 (Spark scales it by each user's pair count), alpha 1-5).
    seed_points: list[SeedPoint] = field(
        default_factory=lambda: [
            SeedPoint(rank=32, reg_param=0.1, alpha=1.0),
            SeedPoint(rank=64, reg_param=0.2, alpha=5.0),
        ]
    )
    validation_users: int = 1000
    rung_fraction: float = 0.3
    reduction_factor: int = 3
    validation_days: int = 14  # temporal split; the random split holds out split.test_fraction
    metric: Literal["ndcg", "recall", "precision", "map", "hit_rate"] = "ndcg"


@dataclass
class TrainConfig:
    k: int = 10  # metrics @k
    refit_on_all: bool = True  # serve a model refitted on all interactions
    registered_model: str | None = "recsys-spark"  # MLflow Model Registry name (null: log the model, do not register)
    # Skip train when the saved model was fitted on exactly these events (the same count and newest
    # event): a scheduler can run the pipeline often and pay for a fit only when data arrived.
    if_changed: bool = False


@dataclass
class ModelConfig:
    """Which model family serves: `als`, `ease` (recs/ease.py), or `auto`, which fits both and serves
    the one with the better tune.metric on the same validation users (both are logged). `auto`
    skips EASE, and says so, for a catalogue above ease.max_items."""

    family: Literal["auto", "als", "ease"] = "auto"


@dataclass
class EaseConfig:
    """EASE: λ (and EDLAE's dropout) chosen on the validation users ALS's trials are scored on, for
    catalogues up to max_items."""

    lambdas: list[float] = field(default_factory=lambda: [50.0, 200.0, 500.0, 2000.0])  # searched on validation
    dropouts: list[float] = field(default_factory=lambda: [0.0])  # EDLAE's p, each with every λ (0: EASE)
    max_items: int = 20_000  # larger catalogues are refused (dense n x n matrices on the driver)


@dataclass
class RegistryConfig:
    """When the `champion` alias moves: the champion is scored on the challenger's test split (same
    users, same metric code), and the challenger must beat it there (see recs/promotion.py)."""

    min_improvement: float = 0.0  # the challenger's tune.metric must exceed the champion's by more than this
    require_significant: bool = False  # also require the paired bootstrap interval's lower bound above 0
    bootstrap: int = 500  # paired (Poisson) bootstrap resamples of the test users for that interval


@dataclass
class HoldoutConfig:
    """The control arm: users whose keyed hash of (salt, user id) falls below `fraction` are
    served `policy` instead of their recommendations (see analytics/arms.py); stable while the salt is."""

    fraction: float = 0.0  # 0: no control arm; at most 0.5
    salt: str | None = None  # needed when fraction > 0; logged to MLflow as an id only
    policy: Literal["popular", "none"] = "popular"  # the control's list: most popular unseen items, or nothing


@dataclass
class RecommendConfig:
    n: int = 10
    users: list[str] | None = None  # null: every user the model knows
    model: str | None = None  # null: <output.root>/model
    run_date: dt.date | None = None  # the serving date (null: today, UTC); the simulator sets its own day
    # Users with events newer than the model's data get lists from their whole current history
    # (ALS: folded-in factors; EASE: the history itself), new users included (recs/foldin.py).
    fold_in: bool = False
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    # What a list may hold (recs/filters.py), applied before the top-N is cut: a user still gets n
    # items while n remain. Tables are CSV (.csv), JSON (.json) or Parquet (anything else).
    item_filter: str | None = None  # a condition over items.path's columns; items it is not true for are never listed
    exclude: str | None = None  # a table of item_id (never listed), or of user_id, item_id (never for that user)
    candidates: str | None = None  # a table of item_id: lists hold only these items
    exclude_seen: Literal["all", "none"] | list[str] = "all"  # or the event types whose items are never re-listed
    max_per_value: dict[str, int] = field(default_factory=dict)  # {column of items.path: k}: at most k per value


@dataclass
class DriftConfig:
    """recommend's drift report: this run's lists against the previous run's (analytics/drift.py)."""

    enabled: bool = True
    max_psi: float = 0.25  # a run whose item or score PSI is above this is flagged (0.25: a shift, by convention)


@dataclass
class ItemsConfig:
    """Item attributes (a side table joined by item id; may be the text.path file) that
    recommend.item_filter and recommend.max_per_value name."""

    path: str | None = None  # CSV/Parquet/JSON; null: no attributes
    format: Literal["parquet", "csv", "json"] = "csv"
    options: dict[str, str] = field(default_factory=lambda: {"header": "true"})  # passed to the Spark reader
    id_column: str = "item_id"  # the column holding the events' item_id


@dataclass
class StreamConfig:
    """`recsys-spark stream`: raw files as they land -> events and quarantine (ingest's validation),
    exactly once, then fresh lists for the users each micro-batch touched (jobs/stream.py)."""

    once: bool = False  # true (--once): what has landed, then stop (Trigger.AvailableNow, for a scheduler)
    interval_seconds: int = 60  # else: a micro-batch this often, until stopped
    max_files_per_batch: int | None = None  # Spark's maxFilesPerTrigger (null: every new file)
    refresh: bool = True  # recommend (with fold-in) for each batch's users when a model exists
    # Late events: a clean row older than the newest event of the stream's earlier batches minus
    # this many hours is quarantined as `late` (Spark's watermark rule); null: merged however late.
    watermark_hours: float | None = None


@dataclass
class SimulateConfig:
    """`recsys-spark simulate`: users who respond to what they were served (see analytics/simulator.py)."""

    effect: float = 1.0  # how strongly matching served items raise the return chance; 0: lists change nothing
    days: int = 7  # each round's period: served, then this many days of new events
    seed: int = 7


@dataclass
class EffectConfig:
    """What `effect` measures after a served run: outcomes in windows after the serving date."""

    windows: list[int] = field(default_factory=lambda: [7, 14, 28])  # follow-up days
    pre_days: int = 28  # the CUPED covariate: active days in this many days up to the serving date
    purchase_types: list[str] = field(default_factory=lambda: ["purchase"])  # event types counted as purchases
    served_date: dt.date | None = None  # null: the latest served run (or --run-id)
    run_id: str | None = None  # a recommend run's id (its served date)


@dataclass
class RetentionConfig:
    granularity: Literal["day", "week", "month"] = "week"  # weeks start on Monday, UTC
    event_types: list[str] | None = None  # null: any event is activity; e.g. [purchase]


@dataclass
class TextConfig:
    """Item texts (a side table joined by item id) and the encoder that embeds them; see items/texts.py."""

    path: str | None = None  # CSV/Parquet/JSON of item texts; null: no texts, no new-items tables
    format: Literal["parquet", "csv", "json"] = "csv"
    options: dict[str, str] = field(default_factory=lambda: {"header": "true"})  # passed to the Spark reader
    id_column: str = "item_id"  # the column holding the events' item_id
    columns: list[str] = field(default_factory=lambda: ["title"])  # joined with spaces
    encoder: Literal["auto", "word2vec", "sentence-transformers"] = "auto"  # auto: sentence-transformers if installed
    model: str = "all-MiniLM-L6-v2"  # sentence-transformers: a local model folder or a model name
    dimension: int = 64  # word2vec vector size
    batch_size: int = 64  # sentence-transformers texts per forward pass


@dataclass
class NewItemsConfig:
    """Which items count as new, and how their factors come from text; see items/cold.py."""

    max_age_days: int = 30  # first seen within this many days of the data's last day
    min_users: int = 5  # or fewer distinct users than this
    n: int = 10  # new-item recommendations per user
    methods: list[Literal["ridge", "knn"]] = field(default_factory=lambda: ["ridge", "knn"])
    reg_params: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])  # ridge candidates
    neighbours: list[int] = field(default_factory=lambda: [10, 20, 50])  # knn candidates
    validation_fraction: float = 0.1  # warm items that pretend to be new when choosing the method
    holdout_fraction: float = 0.1  # evaluate-new-items: items held out whole
    similar_n: int = 10  # similar_items per item
    seed: int = 42


@dataclass
class PrivacyConfig:
    """Pseudonymous user ids and erasure; see events/privacy.py."""

    pseudonymize: bool = False  # user ids in every table and artifact become HMAC-SHA256(key, id)
    key_env: str = "RECSYS_PSEUDONYM_KEY"  # the environment variable holding the key (never logged or written)
    erasure_list: str | None = None  # null: <output.root>/privacy/erased


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # null: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "recsys-spark"


@dataclass
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    input: InputConfig = field(default_factory=InputConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    interactions: InteractionsConfig = field(default_factory=InteractionsConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    als: ALSConfig = field(default_factory=ALSConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ease: EaseConfig = field(default_factory=EaseConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    effect: EffectConfig = field(default_factory=EffectConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    text: TextConfig = field(default_factory=TextConfig)
    items: ItemsConfig = field(default_factory=ItemsConfig)
    new_items: NewItemsConfig = field(default_factory=NewItemsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def path(self, name: str) -> str:
        """A table's location under the output root (events, quarantine, model, ...)."""
        return f"{self.output.root.rstrip('/')}/{name}"

    @property
    def input_path(self) -> str:
        return self.input.path or self.path(names.RAW)

    @property
    def erasure_list(self) -> str:
        return self.privacy.erasure_list or self.path(names.ERASED)

    @property
    def checkpoint_dir(self) -> str:
        return self.spark.checkpoint_dir or self.path(names.CHECKPOINTS)

    @property
    def model_path(self) -> str:
        """The model the recommend and items jobs serve: recommend.model, else the one train writes."""
        return self.recommend.model or self.path(names.MODEL)

    @property
    def reports_dir(self) -> Path | None:
        """Where reports go on disk: <output.root>/reports when the root is local (else MLflow only)."""
        root = local_path(self.output.root)
        return root / "reports" if root is not None else None

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read YAML (or the built-in defaults when `path` is None), apply `key=value` overrides, validate."""
    return validate(read_config(path, overrides))


def read_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """`load_config` without the validation, for a caller that changes the config before validating
    it once (the CLI applies its flags)."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (pass an existing YAML file to --config)")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top, got {type(raw).__name__}")
    for item in overrides or []:
        _apply_override(raw, item)
    return _build(Config, raw, "")


# (dotted key, rule, hint): the range checks. Rules: "positive" (int >= 1 / number > 0),
# "non_negative" (>= 0), "fraction" (0..1), "open_fraction" (strictly between 0 and 1).
_RANGES: list[tuple[str, str, str]] = [
    ("spark.shuffle_partitions", "positive", "try 8"),
    ("spark.blas_threads", "positive", "try 1"),
    ("generate.events", "positive", ""),
    ("stream.interval_seconds", "positive", "try 60"),
    ("stream.max_files_per_batch", "positive", "or null for every new file"),
    ("stream.watermark_hours", "non_negative", "try 48, or null to merge every late event"),
    ("generate.users", "positive", ""),
    ("generate.items", "positive", ""),
    ("generate.clusters", "positive", ""),
    ("generate.days", "positive", ""),
    ("generate.users_per_chunk", "positive", ""),
    ("generate.bad_fraction", "fraction", "try 0.002"),
    ("output.keep_versions", "non_negative", "try 1"),
    ("ingest.max_bad_fraction", "fraction", "try 0.5"),
    ("ingest.future_slack_hours", "non_negative", "try 24"),
    ("interactions.half_life_days", "positive", "try 30, or null for no decay"),
    ("interactions.min_user_items", "positive", "try 1"),
    ("interactions.min_item_users", "positive", "try 1"),
    ("split.test_days", "positive", "try 14"),
    ("split.followup_days", "non_negative", "try 7"),
    ("split.test_fraction", "open_fraction", "try 0.2"),
    ("als.rank", "positive", "try 32"),
    ("als.max_iter", "positive", "try 10"),
    ("als.reg_param", "non_negative", "try 0.05"),
    ("als.alpha", "non_negative", "try 10"),
    ("als.num_user_blocks", "positive", "or null for the default parallelism"),
    ("als.num_item_blocks", "positive", "or null for the default parallelism"),
    ("als.epsilon", "positive", "try 1.0"),
    ("tune.space.rank", "positive", "try [8, 128]"),
    ("tune.space.reg_param", "positive", "try [0.001, 1.0]"),
    ("tune.space.alpha", "positive", "try [0.1, 50.0]"),
    ("tune.space.max_iter", "positive", "try [5, 20]"),
    ("tune.trials", "positive", "try 12"),
    ("tune.timeout_s", "positive", "or null for no time limit"),
    ("tune.validation_users", "positive", "try 2000"),
    ("tune.rung_fraction", "fraction", "try 0.3, or 1 for no first rung"),
    ("tune.validation_days", "positive", "try 14"),
    ("train.k", "positive", "try 10"),
    ("registry.min_improvement", "non_negative", "try 0.0, or 0.005 to ignore ties within noise"),
    ("registry.bootstrap", "positive", "try 500"),
    ("ease.max_items", "positive", "try 20000"),
    ("recommend.n", "positive", "try 10"),
    ("drift.max_psi", "non_negative", "try 0.25"),
    ("effect.windows", "positive", "try [7, 14, 28]"),
    ("effect.pre_days", "positive", "try 28"),
    ("simulate.effect", "non_negative", "try 1.0, or 0 for lists that change nothing"),
    ("simulate.days", "positive", "try 7"),
    ("text.dimension", "positive", "try 64"),
    ("text.batch_size", "positive", "try 64"),
    ("new_items.max_age_days", "non_negative", "try 30"),
    ("new_items.min_users", "positive", "try 5"),
    ("new_items.n", "positive", "try 10"),
    ("new_items.reg_params", "positive", "try [0.1, 1.0, 10.0]"),
    ("new_items.neighbours", "positive", "try [10, 20, 50]"),
    ("new_items.validation_fraction", "open_fraction", "try 0.1"),
    ("new_items.holdout_fraction", "open_fraction", "try 0.1"),
    ("new_items.similar_n", "positive", "try 10"),
]


def _is_zone(name: str) -> bool:
    """Whether Spark can read `name` as a zone: a tz database region id, UTC/GMT/Z, or an offset."""
    if re.fullmatch(r"(UTC|GMT|UT)?[+-]\d{1,2}(:?\d{2})?|UTC|GMT|UT|Z", name.strip(), re.IGNORECASE):
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder name such as America
        return False
    return True


def _check_filters(cfg: Config) -> None:
    """recommend's filters and cap: what they name must exist (the item_filter's own check needs
    Spark's parser and runs in the job)."""
    r = cfg.recommend
    if len(r.max_per_value) > 1:
        raise ConfigError(
            f"recommend.max_per_value caps {len(r.max_per_value)} columns ({sorted(r.max_per_value)}): "
            "one column at a time, e.g. {category: 3}"
        )
    for column, k in r.max_per_value.items():
        _check_range(f"recommend.max_per_value.{column}", k, "positive", "e.g. {category: 3}")
    for key, used in (("recommend.item_filter", r.item_filter), ("recommend.max_per_value", r.max_per_value)):
        if used and not cfg.items.path:
            raise ConfigError(f"{key} names item attributes, but items.path is not set: point it at the item table")
    if isinstance(r.exclude_seen, list):
        _check_event_types(cfg, "recommend.exclude_seen", r.exclude_seen, "all / none")


def _check_event_types(cfg: Config, key: str, types: list[str], instead: str) -> None:
    """`types` (set at `key`) must be a non-empty list of events.weights' types; else name `instead`."""
    unknown = sorted(set(types) - set(cfg.events.weights))
    if unknown or not types:
        raise ConfigError(
            f"{key} has unknown event type(s) {unknown}; known: {sorted(cfg.events.weights)}"
            if unknown
            else f"{key} is an empty list: give event types, or {instead}"
        )


def _check_holdout(h: HoldoutConfig) -> None:
    if not 0 <= h.fraction <= 0.5:
        raise ConfigError(
            f"recommend.holdout.fraction must be in [0, 0.5], got {h.fraction}: try 0.1 (a tenth of users in the "
            "control arm), or 0 for no control arm"
        )
    if h.fraction > 0 and not (h.salt or "").strip():
        raise ConfigError(
            f"recommend.holdout.fraction is {h.fraction} but recommend.holdout.salt is not set: set a salt "
            "(any fixed string; keep it, the same salt keeps every user in the same arm), or set the fraction to 0"
        )


def _normal(path: str) -> str:
    """A path for comparing folders: URIs as written, local paths absolute."""
    path = path.strip().rstrip("/")
    return path if "://" in path else os.path.abspath(path.removeprefix("file:"))


def _check_checkpoint_dir(cfg: Config) -> None:
    """Refuse a checkpoint dir that is, or holds, the output root or the input: checkpoints are
    deleted after each run and by the next one's recovery."""
    ckpt = cfg.spark.checkpoint_dir
    if not ckpt:
        return
    c = _normal(ckpt)
    for key, other in (("output.root", cfg.output.root), ("input.path", cfg.input_path)):
        o = _normal(other)
        if o == c or o.startswith(c + "/"):
            where = "is" if o == c else "holds"
            raise ConfigError(
                f"spark.checkpoint_dir {ckpt!r} {where} {key} {other!r}: checkpoint folders are deleted after "
                "every run, so it must be a folder of its own; leave it unset (<output.root>/checkpoints) "
                "or point it at an empty folder"
            )


def _lookup(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _check_range(key: str, value: Any, rule: str, hint: str) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_range(f"{key}[{i}]", v, rule, hint)
        return
    ok, expected = {
        "positive": (
            value >= 1 if isinstance(value, int) else value > 0,
            "a positive integer" if isinstance(value, int) else "> 0",
        ),
        "non_negative": (value >= 0, ">= 0"),
        "fraction": (0 <= value <= 1, "between 0 and 1"),
        "open_fraction": (0 < value < 1, "strictly between 0 and 1"),
    }[rule]
    if not ok:
        raise ConfigError(f"{key} must be {expected}, got {value!r}" + (f"; {hint}" if hint else ""))


def validate(cfg: Config) -> Config:
    """Check ranges and cross-field rules; raise ConfigError naming the key, the value and a fix."""
    for key, rule, hint in _RANGES:
        _check_range(key, _lookup(cfg, key), rule, hint)
    master = cfg.spark.master
    if master is not None and not re.fullmatch(
        r"local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[.+\]|(spark|k8s|mesos)://.+|yarn", master
    ):
        raise ConfigError(
            f"spark.master {master!r} is not a Spark master URL: use local[*], local[2], spark://HOST:PORT, yarn or "
            "k8s://..., or null to take it from spark-submit --master"
        )
    if not cfg.ease.lambdas or any(not (lam > 0) for lam in cfg.ease.lambdas):
        raise ConfigError(
            f"ease.lambdas must be a non-empty list of numbers > 0, got {cfg.ease.lambdas!r}; try [200, 500]"
        )
    if not cfg.ease.dropouts or any(not (0 <= p < 1) for p in cfg.ease.dropouts):
        raise ConfigError(
            f"ease.dropouts must be a non-empty list of numbers in [0, 1), got {cfg.ease.dropouts!r}; "
            "try [0.0] (plain EASE) or [0.0, 0.1, 0.25]"
        )
    if cfg.als.checkpoint_interval < 1 and cfg.als.checkpoint_interval != -1:
        raise ConfigError(
            f"als.checkpoint_interval must be a positive integer or -1 (never), got {cfg.als.checkpoint_interval}"
        )
    if not cfg.output.root.strip() or cfg.output.root.strip().rstrip("/").removeprefix("file:") in ("", "/", "."):
        raise ConfigError(
            f"output.root {cfg.output.root!r} is not a folder of its own: tables would land in it directly or at the "
            "filesystem root; use a dedicated folder such as output"
        )
    _check_checkpoint_dir(cfg)
    _check_holdout(cfg.recommend.holdout)
    if not cfg.effect.windows:
        raise ConfigError("effect.windows is empty: give the follow-up windows in days, e.g. [7, 14, 28]")
    inp = cfg.input
    if not _is_zone(inp.timezone):
        raise ConfigError(
            f"input.timezone {inp.timezone!r} is not a time zone: use a region id such as Europe/London or "
            "America/New_York, an offset such as +02:00, or UTC"
        )
    unknown = sorted(set(inp.columns) - set(names.RAW_EVENT_COLUMNS))
    if unknown:
        raise ConfigError(
            f"input.columns has unknown canonical column(s) {unknown}; "
            f"expected keys among {sorted(names.RAW_EVENT_COLUMNS)}"
        )
    for key in names.REQUIRED_EVENT_COLUMNS:
        if key not in inp.columns:
            raise ConfigError(f"input.columns must map '{key}' to a source column")
    fmts = inp.timestamp_formats
    if len(fmts) > 1 and set(fmts) & {"unix_seconds", "unix_millis"}:
        raise ConfigError(
            f"input.timestamp_format {fmts} mixes unix_seconds/unix_millis with datetime patterns: a column holds "
            "one or the other; give unix_seconds alone, or a list of patterns such as "
            "['yyyy-MM-dd HH:mm:ss', 'M/d/yyyy H:mm']"
        )
    if isinstance(inp.timestamp_format, list) and not fmts:
        raise ConfigError(
            "input.timestamp_format is an empty list: give one or more Spark datetime patterns, or null to cast"
        )
    if "event_type" in inp.columns and inp.event_type:
        raise ConfigError(
            f"input.event_type={inp.event_type!r} (one event type for every row) and input.columns.event_type="
            f"{inp.columns['event_type']!r} (a source column) are both set: drop event_type from input.columns to "
            "use the constant, or set input.event_type to null to read the column"
        )
    if "event_type" not in inp.columns and not inp.event_type:
        raise ConfigError(
            "input.columns has no 'event_type' source column: map one, "
            "or set input.event_type to a constant such as purchase"
        )
    ing = cfg.ingest
    for i, rule in enumerate(ing.rules):
        if not rule.reason.strip():
            raise ConfigError(
                f"ingest.rules[{i}].reason is empty: name the reason rows matching {rule.when!r} are quarantined with"
            )
        call = re.search(r"\b(java_method|try_reflect|reflect)\s*\(", rule.when, re.IGNORECASE)
        if call:
            raise ConfigError(
                f"ingest.rules[{i}] ({rule.reason}): {call.group(1)}() is not allowed in a rule: it calls arbitrary "
                "JVM methods; write the condition with SQL on the row's columns"
            )
    if ing.date_from and ing.date_to and ing.date_from > ing.date_to:
        raise ConfigError(
            f"ingest.date_from {ing.date_from} is after ingest.date_to {ing.date_to}: "
            "swap them (--from is the first day)"
        )
    if not cfg.events.weights:
        raise ConfigError(
            "events.weights is empty: give at least one event type and its weight, e.g. {view: 1.0, purchase: 8.0}"
        )
    _check_range("events.weights", list(cfg.events.weights.values()), "non_negative", "")
    tune = cfg.tune
    for name in ("rank", "reg_param", "alpha", "max_iter"):
        bounds = getattr(tune.space, name)
        if not 1 <= len(bounds) <= 2 or bounds[0] > bounds[-1]:
            raise ConfigError(
                f"tune.space.{name} must be [low, high] with low <= high, or [value] to fix it; got {bounds}"
            )
    for name in ("confidence", "min_value"):
        if not getattr(tune.space, name):
            raise ConfigError(
                f"tune.space.{name} is empty: give at least one choice, "
                f"e.g. {[None] if name == 'min_value' else ['linear']}"
            )
    if tune.reduction_factor < 2:
        raise ConfigError(f"tune.reduction_factor must be an integer >= 2, got {tune.reduction_factor}; try 3")
    if tune.rung_fraction == 0:
        raise ConfigError(
            "tune.rung_fraction must be above 0: it is the share of users the first rung fits on; "
            "try 0.3, or 1 for no first rung"
        )
    if any(v is not None for v in [cfg.als.min_value, *tune.space.min_value]) and "value" not in cfg.input.columns:
        raise ConfigError(
            "als.min_value / tune.space.min_value need event values, but input.columns maps no 'value' column: "
            "map one (e.g. value: rating) or leave them null"
        )
    if cfg.recommend.users is not None and not cfg.recommend.users:
        raise ConfigError(
            "recommend.users is an empty list: give user ids, or null (leave it out) for every user the model knows"
        )
    _check_filters(cfg)
    rc = cfg.retention
    if rc.event_types is not None:
        _check_event_types(cfg, "retention.event_types", rc.event_types, "null for any event")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.privacy.key_env):
        raise ConfigError(
            f"privacy.key_env {cfg.privacy.key_env!r} is not an environment variable name: "
            "use e.g. RECSYS_PSEUDONYM_KEY"
        )
    if not cfg.text.columns:
        raise ConfigError("text.columns is empty: name the item table's text columns, e.g. [title] or [Description]")
    if not cfg.new_items.methods or not cfg.new_items.reg_params or not cfg.new_items.neighbours:
        raise ConfigError(
            "new_items.methods, new_items.reg_params and new_items.neighbours need at least one value each, "
            "e.g. methods [ridge, knn], reg_params [1.0], neighbours [20]"
        )
    return cfg


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def sources(path: str | Path | None, overrides: list[str] | None) -> dict[str, str]:
    """Where each key the config file or an override sets came from: dotted key -> the file's path
    or `--set` (an override wins); a key not listed has its built-in default (`config --show`)."""
    raw = (yaml.safe_load(Path(path).read_text()) or {}) if path is not None else {}
    given: dict[str, Any] = {}
    for item in overrides or []:
        _apply_override(given, item)
    return {key: str(path) for key in flatten(raw)} | {key: "--set" for key in flatten(given)}


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` in the raw mapping; below a free-form mapping (spark.conf) the rest is one key."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key part")
    node, cls = raw, Config
    for i, part in enumerate(parts[:-1]):
        tp = typing.get_type_hints(cls).get(part) if cls else None
        if typing.get_origin(tp) is dict:
            parts = parts[: i + 1] + [".".join(parts[i + 1 :])]
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        cls = tp if dataclasses.is_dataclass(tp) else None
        if len(parts) == i + 2:
            break
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None


# Keys of earlier versions, and where their meaning lives now.
_TUNE_WHY = "tuning samples ranges with Optuna instead of trying a grid; give [value] to fix a parameter"
_MOVED = {  # key -> (where it lives now, why)
    "tune.rank": ("tune.space.rank ([low, high])", _TUNE_WHY),
    "tune.reg_param": ("tune.space.reg_param ([low, high])", _TUNE_WHY),
    "tune.alpha": ("tune.space.alpha ([low, high])", _TUNE_WHY),
    "ease.enabled": ("model.family (auto, als or ease)", "auto fits EASE beside ALS and serves the better one"),
}


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        if key in _MOVED:
            raise ConfigError(f"config key '{key}' is now {_MOVED[key][0]}: {_MOVED[key][1]}")
        raise ConfigError(f"unknown config key '{key}'; expected one of: {', '.join(sorted(known))}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in data:
            raise ConfigError(f"missing config key '{where}.{name}'" if where else f"missing config key '{name}'")
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}" if where else name) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        if isinstance(value, bool):
            return "true" if value else "false"  # as Spark and Java expect
        return str(value)
    if tp is dt.date:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{key}: expected a date like 2026-01-31, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # pragma: no cover


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dt.date):
        return v.isoformat()
    return v
