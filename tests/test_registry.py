"""The registry's champion rule on a real MLflow store, without Spark: a version carries the data it
was trained on, and a model of another dataset never takes (or is compared for) the alias."""

import mlflow

from recsys_spark.mlops.registry import CHAMPION, register_model

from support import mlflow_state


def dataset(path: str, rows: int) -> dict[str, str]:
    """A train run's dataset tags (jobs/dataset.py: log_events_tags)."""
    return {
        "dataset_input": path,
        "dataset_path": f"{path}-out/events",
        "data_rows": str(rows),
        "data_first_date": "2026-01-05",
        "data_last_date": "2026-03-01",
        "data_partitions": "56",
        "data_partitions_sha1": "0123456789ab",
    }


def test_a_version_carries_its_dataset_and_other_data_never_competes_for_champion(tmp_path):
    # Issue 34, point 1: MovieLens's champion (NDCG 0.42) kept Online Retail's model (0.09) out, and the
    # registry could not tell the versions apart.
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.yaml").write_text("recommend: {n: 10}\n")  # logged, not loaded: the check needs no model
    with mlflow_state():
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
        mlflow.set_experiment("registry")

        def register(data, ndcg):
            with mlflow.start_run():
                return register_model(str(model), "recs", "ndcg_at_10", ndcg, 0.05, data)

        movies, retail = dataset("data/ml-100k/u.data", 100_000), dataset("data/online_retail.csv.gz", 392_668)
        assert register(movies, 0.42) == "recs v1 registered and is now champion (ndcg_at_10 0.4200, popularity 0.0500)"
        assert register(retail, 0.09) == (
            "recs v2 registered; champion stays v1: it was trained on data/ml-100k/u.data, this version on "
            "data/online_retail.csv.gz, and models of different data are not compared "
            "(give each dataset its own train.registered_model, or move the alias by hand)"
        )
        assert register(retail, 0.99).startswith("recs v3 registered; champion stays v1: it was trained on")
        # The same dataset, grown by a day: compared, and the better model takes the alias.
        assert register(dataset("data/ml-100k/u.data", 100_500), 0.43).startswith("recs v4 registered and is now")
        client = mlflow.MlflowClient()
        assert int(client.get_model_version_by_alias("recs", CHAMPION).version) == 4
        v2 = client.get_model_version("recs", "2")
        assert {k: v2.tags[k] for k in retail} == retail
        assert v2.description == (
            "Trained on data/online_retail.csv.gz: 392668 clean events from 2026-01-05 to 2026-03-01 "
            "(56 partitions, sha1 0123456789ab; events table data/online_retail.csv.gz-out/events)."
        )
