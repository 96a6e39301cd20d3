"""Batch scoring: every flight of a month scored by the champion, and by a challenger in its shadow."""

from __future__ import annotations

import duckdb
import polars as pl

from mlplatform.features import FEATURES_TABLE, KEY_COLUMNS
from mlplatform.model import LABEL, DelayModel
from mlplatform.warehouse import PARTITION_COLUMN, partition_row_count, transaction

PREDICTIONS_TABLE = "flight_delay_predictions"
CHAMPION_SCORE, CHALLENGER_SCORE = "delay_probability", "challenger_delay_probability"


def month_features(con: duckdb.DuckDBPyConnection, month: str) -> pl.DataFrame:
    query = f"SELECT * FROM {FEATURES_TABLE} WHERE {PARTITION_COLUMN} = ?"
    frame = pl.from_arrow(con.sql(query, params=[month]).to_arrow_table())
    if frame.is_empty():
        raise ValueError(f"flight_features has no rows for {month}: materialize that month first")
    return frame


def score_month(
    features: pl.DataFrame,
    champion: tuple[str, DelayModel],
    challenger: tuple[str, DelayModel] | None = None,
) -> pl.DataFrame:
    """One row per flight: its key, the champion's version and probability, the challenger's when there is
    one (else nulls), and the label when the month has it (null for cancelled or not yet flown)."""
    champion_version, champion_model = champion
    challenger_version, challenger_scores = None, None
    if challenger is not None:
        challenger_version, challenger_scores = challenger[0], challenger[1].predict(features)
    return features.select(*KEY_COLUMNS, PARTITION_COLUMN, LABEL).with_columns(
        pl.lit(champion_version, pl.String).alias("model_version"),
        pl.Series(CHAMPION_SCORE, champion_model.predict(features), pl.Float32),
        pl.lit(challenger_version, pl.String).alias("challenger_version"),
        pl.Series(CHALLENGER_SCORE, challenger_scores, pl.Float32)
        if challenger_scores is not None
        else pl.lit(None, pl.Float32).alias(CHALLENGER_SCORE),
    )


def replace_predictions(con: duckdb.DuckDBPyConnection, month: str, predictions: pl.DataFrame) -> int:
    """Replace ``month`` of the predictions table atomically; returns its row count."""
    con.register("scored", predictions.to_arrow())
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} AS SELECT * FROM scored LIMIT 0")
        with transaction(con):
            con.execute(f"DELETE FROM {PREDICTIONS_TABLE} WHERE {PARTITION_COLUMN} = ?", [month])
            con.execute(f"INSERT INTO {PREDICTIONS_TABLE} BY NAME SELECT * FROM scored")
    finally:
        con.unregister("scored")
    return partition_row_count(con, PREDICTIONS_TABLE, month)
