"""Local versioned tables (infra/versions.py, plain Python): how many earlier versions a commit
and `recover` keep, the journal of a two-table commit and the points a commit passes; and that
the session's output.keep_versions reaches the table layer's writes."""

from pathlib import Path

from recsys_spark.infra import tables, versions


def version(link: Path, rows: str) -> Path:
    """A complete new version of the table at `link` holding one file."""
    v = versions.new_version(link)
    v.mkdir(parents=True)
    (v / "part.txt").write_text(rows)
    return v


def kept(link: Path) -> int:
    """Earlier versions beside the current one."""
    return sum(1 for v in versions.versions_dir(link).iterdir() if v.is_dir()) - 1


def test_commits_keep_the_asked_number_of_earlier_versions(tmp_path):
    link = tmp_path / "t"
    for i in range(4):
        versions.commit([(link, version(link, f"v{i}"))], keep=2)
    assert (link / "part.txt").read_text() == "v3" and kept(link) == 2
    versions.commit([(link, version(link, "v4"))], keep=0)
    assert (link / "part.txt").read_text() == "v4" and kept(link) == 0


def test_a_two_table_commit_passes_its_points_in_order_under_a_journal(tmp_path):
    seen: list[str] = []
    versions.on_switch_point(seen.append)
    try:
        a, b = tmp_path / "a", tmp_path / "b"
        versions.commit([(a, version(a, "a1")), (b, version(b, "b1"))], keep=1)
    finally:
        versions._switch_hooks.remove(seen.append)
    assert seen == ["journal", "switched_one", "committed"]
    assert (a / "part.txt").read_text() == "a1" and (b / "part.txt").read_text() == "b1"
    assert not list((tmp_path / versions.VERSIONS).glob(f"{versions.JOURNAL}*"))  # the journal is gone


def test_recover_prunes_to_the_number_it_is_given(tmp_path):
    link = tmp_path / "t"
    for i in range(3):
        versions.commit([(link, version(link, f"v{i}"))], keep=5)
    assert kept(link) == 2
    assert versions.recover(str(tmp_path), keep=0) == []  # nothing was half done; pruning is silent
    assert kept(link) == 0 and (link / "part.txt").read_text() == "v2"


def test_the_sessions_keep_versions_reaches_the_writes(spark, tmp_path):
    path = str(tmp_path / "t")
    tables.set_keep_versions(spark, 2)
    try:
        for i in range(4):
            tables.write_table(spark.range(i + 1), path)
        assert kept(Path(path)) == 2 and tables.read_table(spark, path).count() == 4
    finally:
        tables.set_keep_versions(spark, 1)
