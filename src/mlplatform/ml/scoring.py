"""Batch scoring: every row of a period served by the champion, or by a canary when its key falls in the canary's
share, and scored by the champion (and a challenger) in the shadow of whoever served it.

A row belongs to a canary when its bucket, a number in [0, 1) read from the md5 of its natural key's text, is
below the share the canary serves. md5 is the same in every DuckDB version (its ``hash()`` is not), so a row's
bucket never changes: the same rows fall in the canary on every run, and a row in a 10% canary stays in the 50%
one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import polars as pl

from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.sql import identifier
from mlplatform.data.warehouse import partition_row_count, transaction
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, PREDICTIONS_TABLE, Dataset

if TYPE_CHECKING:  # PyTorch is imported where a model is loaded or trained, not here
    from mlplatform.ml.model import TabularModel

# What a row is served (the canary's probability on its rows, else the champion's), the champion's on every row,
# and the challenger's in shadow.
SERVED_SCORE, CHAMPION_SCORE, CHALLENGER_SCORE = "probability", "champion_probability", "challenger_probability"
CANARY_BUCKET = "canary_bucket"


@dataclass(frozen=True)
class Canary:
    version: str
    share: float  # the rows whose bucket is below it are the canary's


def canary_bucket_sql(key: list[str]) -> str:
    """SQL for a row's bucket in [0, 1): the first 32 bits of the md5 of its key columns' text (unit separated)."""
    text = ", ".join(f"coalesce(CAST({identifier(column)} AS VARCHAR), '')" for column in key)
    return f"(('0x' || left(md5(concat_ws(chr(31), {text})), 8))::UBIGINT / 4294967296.0)"


def period_features(con: duckdb.DuckDBPyConnection, dataset: Dataset, period: str) -> pl.DataFrame:
    """The period's features, each row with its canary bucket."""
    bucket = canary_bucket_sql(dataset.declaration.features.key)
    query = f"SELECT *, {bucket} AS {CANARY_BUCKET} FROM {dataset.table(FEATURES_TABLE)} WHERE {PERIOD_COLUMN} = ?"
    frame = pl.from_arrow(con.execute(query, [period]).to_arrow_table())
    if frame.is_empty():
        raise ValueError(f"{dataset.name} features have no rows for {period}: materialize that period first")
    return frame


def score_period(
    dataset: Dataset,
    features: pl.DataFrame,
    models: dict[str, TabularModel],
    champion: str,
    challenger: str | None = None,
    canary: Canary | None = None,
) -> pl.DataFrame:
    """One row per feature row (``features`` from :func:`period_features`): its key, period and label (null
    while not known); ``model_version`` and ``probability``, the model that served it (the canary on the rows
    below its share, else the champion) and its probability; the champion's version and probability on every
    row; the challenger's when there is one (else nulls). ``models`` holds each version named, each scored once."""
    named = {champion, challenger, canary.version if canary else None} - {None}
    scores = {version: models[version].predict(features) for version in named}
    served_by_canary = (features[CANARY_BUCKET] < (canary.share if canary else 0.0)).to_numpy()
    canary_version = canary.version if canary else champion
    return features.select(*dataset.declaration.features.key, PERIOD_COLUMN, dataset.label).with_columns(
        pl.Series("model_version", np.where(served_by_canary, canary_version, champion), pl.String),
        pl.Series(SERVED_SCORE, np.where(served_by_canary, scores[canary_version], scores[champion]), pl.Float32),
        pl.lit(champion, pl.String).alias("champion_version"),
        pl.Series(CHAMPION_SCORE, scores[champion], pl.Float32),
        pl.lit(challenger, pl.String).alias("challenger_version"),
        pl.Series(CHALLENGER_SCORE, scores[challenger], pl.Float32)
        if challenger
        else pl.lit(None, pl.Float32).alias(CHALLENGER_SCORE),
    )


def replace_predictions(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, period: str, predictions: pl.DataFrame
) -> int:
    """Replace ``period`` of the dataset's predictions table atomically; returns its row count."""
    table = dataset.table(PREDICTIONS_TABLE)

    def replace() -> None:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM scored LIMIT 0")
        _add_missing_columns(con, table, "scored")
        with transaction(con):
            con.execute(f"DELETE FROM {table} WHERE {PERIOD_COLUMN} = ?", [period])
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM scored")

    con.register("scored", predictions.to_arrow())
    try:
        retry_on_conflict(replace)
    finally:
        con.unregister("scored")
    return partition_row_count(con, table, period)


def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, relation: str) -> None:
    """Columns of ``relation`` that ``table`` lacks, added (null in its older rows): a table written before a
    column was added takes the new rows."""
    has = {name for name, *_ in con.execute(f"DESCRIBE {table}").fetchall()}
    for name, sql_type, *_ in con.execute(f"DESCRIBE {relation}").fetchall():
        if name not in has:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {identifier(name)} {sql_type}")
