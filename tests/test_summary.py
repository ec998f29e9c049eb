"""The summary a person reads (issue 34): headings over the cohort lines, the association named
once, n/a explained once, parameters rounded. Pure Python: results built by hand."""

from recsys_spark.results import CohortHeadline, RetentionResult, _short


def cohort(name, with_hit, without_hit):
    return {
        "cohort": name,
        "users_evaluated": 10,
        "mean_ndcg": 0.25,
        "hit_rate": 0.5,
        "retained_with_hit": with_hit,
        "retained_without_hit": without_hit,
    }


def result(quality):
    return RetentionResult(
        granularity="week",
        headline=[CohortHeadline("2026-01-05", 100, 0.5, 0.25, [])],
        dau_mau_last_30_days=0.1,
        retention_period1_weighted=0.5,
        retention_period4_weighted=0.25,
        quality_by_cohort=quality,
    )


def test_the_cohort_quality_lines_have_a_heading_and_name_the_association_once():
    lines = result([cohort(f"2026-0{m}-01", 0.53, 0.44) for m in (1, 2, 3, 4)]).lines()
    at = lines.index(
        "recommendation quality of the three latest cohorts with test users "
        "(came back after the test: an association, not an effect; active users get more hits):"
    )
    assert lines[at - 1] == "DAU/MAU, mean over the last 30 days: 0.100"
    assert lines[at + 1 :] == [
        f"  cohort 2026-0{m}-01: 10 evaluated, NDCG 0.250, hit rate 0.50; came back after the test 53% with a hit "
        "vs 44% without"
        for m in (2, 3, 4)
    ]


def test_no_follow_up_is_said_once_and_no_evaluation_prints_no_heading():
    lines = result([cohort("2026-01-01", None, None), cohort("2026-02-01", None, None)]).lines()
    assert lines[-1] == "  (n/a: these data have no follow-up window after the test, so coming back is not observable)"
    assert sum("n/a with a hit vs n/a without" in line for line in lines) == 2
    assert not any(line.startswith("recommendation quality") for line in result([]).lines())


def test_parameters_print_rounded():
    assert [_short(v) for v in (0.047000000000000004, 3.0, 1.2345678e-05, 11, "log")] == [
        "0.047",
        "3",
        "1.235e-05",
        "11",
        "log",
    ]
