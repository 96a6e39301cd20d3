"""The training set: a window of feature months to train on and the month after it held out."""

from __future__ import annotations

import duckdb

from mlplatform.features import FEATURES_TABLE, history_start
from mlplatform.settings import month_range, parse_month_spec
from mlplatform.warehouse import PARTITION_COLUMN

TRAINING_SET_TABLE = "training_set"
SPLIT_COLUMN = "split"
TRAIN, HOLDOUT = "train", "holdout"


def window_months(target_month: str, window: int) -> list[str]:
    """The ``window`` months before ``target_month``."""
    return month_range(history_start(target_month, window), target_month)[:-1]


def missing_months(con: duckdb.DuckDBPyConnection, target_month: str, window: int) -> list[str]:
    """The window's and target's months that have no features yet."""
    parse_month_spec(target_month)
    months = [*window_months(target_month, window), target_month]
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [FEATURES_TABLE]).fetchall()
    if not exists[0][0]:
        return months
    present = {row[0] for row in con.execute(f"SELECT DISTINCT {PARTITION_COLUMN} FROM {FEATURES_TABLE}").fetchall()}
    return [month for month in months if month not in present]


def build_training_set(con: duckdb.DuckDBPyConnection, target_month: str, window: int) -> dict[str, int]:
    """Replace ``training_set`` with the window's features (``split = 'train'``) and the target month's
    (``split = 'holdout'``); returns the row count of each split.

    Every month must already have features: a missing one is an error, never a silently smaller window.
    """
    missing = missing_months(con, target_month, window)
    if missing:
        raise ValueError(f"flight_features has no rows for {missing}: materialize those months first")
    con.execute(
        f"CREATE OR REPLACE TABLE {TRAINING_SET_TABLE} AS SELECT *, "
        f"CASE WHEN {PARTITION_COLUMN} = $target THEN '{HOLDOUT}' ELSE '{TRAIN}' END AS {SPLIT_COLUMN} "
        f"FROM {FEATURES_TABLE} WHERE {PARTITION_COLUMN} IN (SELECT unnest($months))",
        {"target": target_month, "months": [*window_months(target_month, window), target_month]},
    )
    counts = con.execute(f"SELECT {SPLIT_COLUMN}, count(*) FROM {TRAINING_SET_TABLE} GROUP BY 1").fetchall()
    return {TRAIN: 0, HOLDOUT: 0} | dict(counts)
