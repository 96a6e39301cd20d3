"""The training set: a window of feature periods to train on and the period after it held out."""

from __future__ import annotations

import duckdb

from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.warehouse import ensure_schema
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, TRAINING_SET_TABLE, Dataset

SPLIT_COLUMN = "split"
TRAIN, HOLDOUT = "train", "holdout"


def window_periods(dataset: Dataset, target: str, window: int) -> list[str]:
    """The ``window`` periods before ``target``."""
    return dataset.periods.before(target, window)


def periods_with_features(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> set[str]:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [dataset.name, FEATURES_TABLE]
    ).fetchall()[0][0]
    if not exists:
        return set()
    query = f"SELECT DISTINCT {PERIOD_COLUMN} FROM {dataset.table(FEATURES_TABLE)}"
    return {row[0] for row in con.execute(query).fetchall()}


def missing_periods(con: duckdb.DuckDBPyConnection, dataset: Dataset, target: str, window: int) -> list[str]:
    """The window's and target's periods that have no features yet."""
    present = periods_with_features(con, dataset)
    return [period for period in [*window_periods(dataset, target, window), target] if period not in present]


def build_training_set(con: duckdb.DuckDBPyConnection, dataset: Dataset, target: str, window: int) -> dict[str, int]:
    """Replace the dataset's ``training_set`` with the window's features (``split = 'train'``) and the target
    period's (``split = 'holdout'``); returns the row count of each split.

    Every period must already have features: a missing one is an error, never a silently smaller window.
    """
    missing = missing_periods(con, dataset, target, window)
    if missing:
        raise ValueError(f"{dataset.name} features have no rows for {missing}: materialize those periods first")
    table = dataset.table(TRAINING_SET_TABLE)

    def build() -> None:
        ensure_schema(con, dataset)
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT *, "
            f"CASE WHEN {PERIOD_COLUMN} = $target THEN '{HOLDOUT}' ELSE '{TRAIN}' END AS {SPLIT_COLUMN} "
            f"FROM {dataset.table(FEATURES_TABLE)} WHERE {PERIOD_COLUMN} IN (SELECT unnest($periods))",
            {"target": target, "periods": [*window_periods(dataset, target, window), target]},
        )

    retry_on_conflict(build)
    counts = con.execute(f"SELECT {SPLIT_COLUMN}, count(*) FROM {table} GROUP BY 1").fetchall()
    return {TRAIN: 0, HOLDOUT: 0} | dict(counts)
