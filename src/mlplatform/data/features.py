"""Point-in-time features: a dataset's feature SQL, run by the platform one period at a time.

The SQL never reads the warehouse's tables. For each period the platform gives it temporary views:
``current_<source>`` (the period's clean rows), ``history_<source>`` (clean rows of the
``lookback_periods`` periods before it, never the period itself or a later one) and the reference tables.
So adding a later period never changes an earlier period's features, whoever wrote the SQL; the leakage
test checks it for every declared dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.sql import identifier, sql_string
from mlplatform.data.warehouse import ensure_schema, partition_row_count, transaction
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, Dataset, clean_table


def history_periods(dataset: Dataset, period: str, lookback: int) -> list[str]:
    """The periods whose rows the ``history_*`` views hold for ``period`` (those from the first period on)."""
    first = dataset.periods.index(dataset.periods.start)
    return [key for key in dataset.periods.before(period, lookback) if dataset.periods.index(key) >= first]


@contextmanager
def feature_views(con: duckdb.DuckDBPyConnection, dataset: Dataset, period: str, lookback: int) -> Iterator[None]:
    """The only relations the feature SQL may read, for ``period``; dropped again afterwards."""
    history = history_periods(dataset, period, lookback)
    views = {}
    for source in dataset.sources:
        clean = dataset.table(clean_table(source))
        keys = ", ".join(sql_string(key) for key in history) or "NULL"
        views[f"current_{source}"] = f"SELECT * FROM {clean} WHERE {PERIOD_COLUMN} = {sql_string(period)}"
        views[f"history_{source}"] = f"SELECT * FROM {clean} WHERE {PERIOD_COLUMN} IN ({keys})"
    for table in dataset.reference:
        views[table] = f"SELECT * FROM {dataset.table(table)}"
    try:
        for name, query in views.items():
            con.execute(f"CREATE OR REPLACE TEMP VIEW {identifier(name)} AS {query}")
        yield
    finally:
        for name in views:
            con.execute(f"DROP VIEW IF EXISTS temp.{identifier(name)}")


def build_features(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, period: str, params: dict[str, Any], lookback: int
) -> int:
    """Replace ``period`` of the dataset's features table by its feature SQL; returns the period's row count."""
    table = dataset.table(FEATURES_TABLE)
    select = f"SELECT *, {sql_string(period)} AS {PERIOD_COLUMN} FROM ({dataset.features_sql})"
    args = dataset.sql_parameters(period, params)

    def build() -> None:
        ensure_schema(con, dataset)
        with feature_views(con, dataset, period, lookback):
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {select} LIMIT 0", args)
            with transaction(con):
                con.execute(f"DELETE FROM {table} WHERE {PERIOD_COLUMN} = ?", [period])
                con.execute(f"INSERT INTO {table} {select}", args)

    retry_on_conflict(build)
    return partition_row_count(con, table, period)
