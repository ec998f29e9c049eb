"""The output tables' names (under `output.root`) and their partition columns: one home, so a
table is renamed in one place and each contract in docs/design.md maps to a constant here.
Spark-free: the CLI, the report and the tests read it too."""

EVENTS = "events"  # the clean events, by event_date
QUARANTINE = "quarantine"  # rejected rows with their reason, by parsed_event_date
RAW = "raw"  # the generator's raw events (input.path when none is given)
RAW_ITEMS = "raw_items"  # the generator's item texts
MODEL = "model"  # the saved model bundle (ALS factors, id maps, seen pairs, popularity)
EVAL = "eval"  # train's evaluation tables (eval/metrics, eval/per_user, ...)
PER_USER = "eval/per_user"
NEW_ITEMS_EVAL = "eval/new_items"
RECOMMENDATIONS = "recommendations"  # top-N per user, by run_date
ASSIGNMENTS = "assignments"  # the exposure log: each served user's arm, by run_date
NEW_ITEMS = "new_items"
SIMILAR_ITEMS = "similar_items"
EMBEDDINGS = "embeddings"
RETENTION = "retention"  # retention/cohorts, retention/stickiness, retention/quality_by_cohort
EFFECT_ESTIMATES = "effect/estimates"  # by served_date
EFFECT_ARMS = "effect/arms"  # by served_date
SIMULATE_ROUNDS = "simulate/rounds"
STREAM_BATCHES = "stream/batches"  # the stream's committed micro-batches: a replayed batch id is skipped
STREAM_CHECKPOINT = "stream/checkpoint"  # Structured Streaming's offsets and commits (not a table)
ERASED = "privacy/erased"  # the erasure list (privacy.erasure_list when none is given)
CHECKPOINTS = "checkpoints"

# The canonical event columns: what input.columns maps source columns to, in this order; the clean
# events add EVENT_DATE. events/schema.py gives their types.
RAW_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "event_ts", "value")
REQUIRED_EVENT_COLUMNS = ("user_id", "item_id", "event_ts")  # event_type may be a constant, value is optional

EVENT_DATE = "event_date"  # events and raw input
# Events: the raw input's own `event_date` (its partition) a row was read from, null where the input
# has none. A partial ingest rebuilds its dates from its raw partitions and keeps, by this column,
# the rows of those dates that arrived in other raw partitions (a late event in raw D+1 dated D).
RAW_DATE = "raw_date"
QUARANTINE_DATE = "parsed_event_date"  # no leading underscore: pyarrow and pandas skip such folders
RUN_DATE = "run_date"  # recommendations, assignments
SERVED_DATE = "served_date"  # effect tables

# Recommendations' `source`: the model's own list (its family: ALS or EASE), or the popular fallback
# (for a known user the model cannot score, and the control arm), or the popular list for a user it
# never saw. The fold_in sources: the list scored from the user's history newer than the model
# (recommend --fold-in).
ALS = "als"
EASE = "ease"
ALS_FOLD_IN = "als_fold_in"
EASE_FOLD_IN = "ease_fold_in"
POPULAR = "popular"
UNKNOWN_USER = "popular_unknown_user"
