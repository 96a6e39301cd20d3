"""Batch scoring: every row of a period scored by the champion, and by a challenger in its shadow."""

from __future__ import annotations

import duckdb
import polars as pl

from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.warehouse import partition_row_count, transaction
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, PREDICTIONS_TABLE, Dataset
from mlplatform.ml.model import TabularModel

CHAMPION_SCORE, CHALLENGER_SCORE = "probability", "challenger_probability"


def period_features(con: duckdb.DuckDBPyConnection, dataset: Dataset, period: str) -> pl.DataFrame:
    query = f"SELECT * FROM {dataset.table(FEATURES_TABLE)} WHERE {PERIOD_COLUMN} = ?"
    frame = pl.from_arrow(con.sql(query, params=[period]).to_arrow_table())
    if frame.is_empty():
        raise ValueError(f"{dataset.name} features have no rows for {period}: materialize that period first")
    return frame


def score_period(
    dataset: Dataset,
    features: pl.DataFrame,
    champion: tuple[str, TabularModel],
    challenger: tuple[str, TabularModel] | None = None,
) -> pl.DataFrame:
    """One row per feature row: its key, the champion's version and probability, the challenger's when there is
    one (else nulls), and the label when the period has it (null when not known yet)."""
    champion_version, champion_model = champion
    challenger_version, challenger_scores = None, None
    if challenger is not None:
        challenger_version, challenger_scores = challenger[0], challenger[1].predict(features)
    return features.select(*dataset.declaration.features.key, PERIOD_COLUMN, dataset.label).with_columns(
        pl.lit(champion_version, pl.String).alias("model_version"),
        pl.Series(CHAMPION_SCORE, champion_model.predict(features), pl.Float32),
        pl.lit(challenger_version, pl.String).alias("challenger_version"),
        pl.Series(CHALLENGER_SCORE, challenger_scores, pl.Float32)
        if challenger_scores is not None
        else pl.lit(None, pl.Float32).alias(CHALLENGER_SCORE),
    )


def replace_predictions(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, period: str, predictions: pl.DataFrame
) -> int:
    """Replace ``period`` of the dataset's predictions table atomically; returns its row count."""
    table = dataset.table(PREDICTIONS_TABLE)

    def replace() -> None:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM scored LIMIT 0")
        with transaction(con):
            con.execute(f"DELETE FROM {table} WHERE {PERIOD_COLUMN} = ?", [period])
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM scored")

    con.register("scored", predictions.to_arrow())
    try:
        retry_on_conflict(replace)
    finally:
        con.unregister("scored")
    return partition_row_count(con, table, period)
