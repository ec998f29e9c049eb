"""The shipped dataset configs on small files in the datasets' exact formats."""

import datetime as dt

import pytest
from chispa import assert_df_equality

from recsys_spark.config import load_config
from recsys_spark.errors import RecsysError
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.runner import JOBS, run_pipeline
from recsys_spark.results import TrainResult

T0 = 964_000_000  # 2000-07-19, MovieLens-era unix seconds
SMALL = [
    "split.test_days=7",
    "split.followup_days=7",
    "tune.validation_days=7",
    "tune.space.rank=[4]",
    "tune.space.alpha=[5.0]",
    "tune.space.reg_param=[0.1]",
    "tune.space.max_iter=[3]",
    "tune.trials=2",
    "als.max_iter=3",
    "spark.shuffle_partitions=2",
]


def ratings(users=12):
    """(user, movie, rating, unix seconds): every user rates 12 movies, one every 5 days."""
    return [
        (u, (u * 3 + j) % 20 + 1, 0.5 + (u + j) % 10 / 2, T0 + (5 * j + u % 5) * 86_400 + u * 60)
        for u in range(1, users + 1)
        for j in range(12)
    ]


def config(name, tmp_path, path):
    return load_config(f"conf/{name}.yaml", [f"input.path={path}", f"output.root={tmp_path}/out", *SMALL])


def run_all(spark, cfg):
    out = run_pipeline(spark, cfg)
    assert out.get(TrainResult).quality["users_evaluated"] > 0
    assert read_table(spark, cfg.path("recommendations")).count() > 0
    assert read_table(spark, cfg.path("retention/cohorts")).count() > 0
    return out


@pytest.mark.slow
def test_movielens_ratings_csv(spark, tmp_path):
    good = ratings()
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{m},{r},{t}" for u, m, r, t in good]
    lines += [",5,4.0,964982703", "7,31,abc,964982224", "7,32,4.0,notatime", "8,33,4.0", lines[1]]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    cfg = config("movielens", tmp_path, tmp_path / "ratings.csv")
    out = JOBS["ingest"](spark, cfg)
    assert (out.rows_read, out.rows_clean) == (len(good) + 5, len(good))
    assert out.quarantined_by_reason == {
        "bad_timestamp": 1,
        "bad_value": 1,
        "duplicate": 1,
        "malformed_row": 1,
        "null_user_id": 1,
    }
    u, m, r, t = good[0]
    first = read_table(spark, cfg.path("events")).where(f"user_id = '{u}' and item_id = '{m}'")
    ts = dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None)
    # raw_date (before the partition column event_date) is null: a CSV file has no raw partition
    expected = spark.createDataFrame([(str(u), str(m), "rating", ts, r, None, ts.date())], first.schema)
    assert_df_equality(first, expected)
    cfg.interactions.min_value = 3.0
    out = run_all(spark, cfg).get(TrainResult)
    assert out.events_below_min_value == sum(r < 3.0 for _, _, r, _ in good)


@pytest.mark.slow
def test_movielens_100k_u_data_explicit_with_random_split(spark, tmp_path):
    good = ratings()
    lines = [f"{u}\t{m}\t{int(r + 0.5)}\t{t}" for u, m, r, t in good] + ["\t5\t4\t964982703", "7\t31\t4"]
    folder = tmp_path / "ml-100k"  # the folder as unpacked: u.data beside files of other layouts
    folder.mkdir()
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    (folder / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0\n"
    )
    (folder / "u.info").write_text("943 users\n1682 items\n100000 ratings\n")
    cfg = config("movielens-100k", tmp_path, folder)
    assert cfg.split.method == "random"  # the default for MovieLens, as in published tables
    cfg.interactions.mode = "explicit"
    out = JOBS["ingest"](spark, cfg)
    assert out.quarantined_by_reason == {"malformed_row": 1, "null_user_id": 1}
    assert run_all(spark, cfg).get(TrainResult).split.test_fraction == 0.2


RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def retail_rows():
    start = dt.datetime(2010, 12, 1, 8, 26)
    rows = []
    for c in range(12):
        for j in range(12):
            when = start + dt.timedelta(days=5 * j + c % 5, minutes=c)
            stamp = f"{when.month}/{when.day}/{when.year} {when.hour}:{when.minute:02d}"
            code = f"2{(c * 3 + j) % 20:04d}"
            rows.append(
                f"{536365 + c * 100 + j},{code},ITEM {code},{1 + j % 4},{stamp},2.55,{17850 + c}.0,United Kingdom"
            )
    return rows


@pytest.mark.slow
def test_online_retail_rules_quarantine_with_their_own_reasons(spark, tmp_path):
    good = retail_rows()
    bad = [
        "536999,85123A,WHITE HANGING HEART,6,12/1/2010 8:26,2.55,,United Kingdom",  # no customer
        "537000,71053,WHITE METAL LANTERN,6,12/2/2010 9:00,3.39,,France",  # no customer
        "C536379,D,Discount,-1,12/3/2010 9:41,27.50,14527.0,United Kingdom",  # cancellation
        "536500,22960,JAM MAKING SET,0,12/3/2010 9:41,4.25,14527.0,United Kingdom",  # zero quantity
        "536501,22961,JAM JAR,2,31/12/2010 9:41,4.25,14527.0,United Kingdom",  # bad date
        "536502,22962,JAM LID,2,12/3/2010 9:41",  # malformed
    ]
    (tmp_path / "online_retail.csv").write_text("\n".join([RETAIL_HEADER, *good, *bad]) + "\n")
    cfg = config("online_retail", tmp_path, tmp_path / "online_retail.csv")
    # The shipped descriptions name real StockCodes, not these rows' (test_real_data runs the items stage).
    cfg.text.path = None
    out = JOBS["ingest"](spark, cfg)
    assert out.rows_clean == len(good)
    assert out.quarantined_by_reason == {
        "bad_timestamp": 1,
        "cancelled": 1,
        "malformed_row": 1,
        "missing_customer": 2,
        "non_positive_quantity": 1,
    }
    events = read_table(spark, cfg.path("events"))
    first = events.where("user_id = '17850.0' and item_id = '20000'").first()
    # 8:26 in London in December is 8:26 UTC (GMT); the quantity is the value.
    assert (first.event_ts, first.value, first.event_type) == (dt.datetime(2010, 12, 1, 8, 26), 1.0, "purchase")
    summer = load_config("conf/online_retail.yaml").input.timezone
    assert summer == "Europe/London"
    out = run_all(spark, cfg)
    cohorts = read_table(spark, cfg.path("retention/cohorts"))
    assert {r.granularity for r in cohorts.select("granularity").distinct().collect()} == {"month"}
    assert {r.cohort for r in cohorts.select("cohort").distinct().collect()} == {dt.date(2010, 12, 1)}


def test_a_file_in_another_format_names_the_path_and_expected_columns(spark, tmp_path):
    (tmp_path / "online_retail.csv").write_text("\n".join([RETAIL_HEADER, *retail_rows()[:3]]) + "\n")
    cfg = config("movielens", tmp_path, tmp_path / "online_retail.csv")
    with pytest.raises(RecsysError) as e:
        JOBS["ingest"](spark, cfg)
    msg = str(e.value)
    assert f"{tmp_path}/online_retail.csv is missing column(s) userId (for user_id)" in msg
    assert "Expected csv with columns ['movieId', 'rating', 'timestamp', 'userId']" in msg
    cfg = config("online_retail", tmp_path, tmp_path / "nothing.csv")
    with pytest.raises(RecsysError, match=f"input path not found: {tmp_path}/nothing.csv"):
        JOBS["ingest"](spark, cfg)
