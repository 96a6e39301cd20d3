"""Features: ``flight_features``, one row per scheduled flight with point-in-time historical rates."""

import dagster as dg
from pydantic import Field

from mlplatform.assets.common import DUCKDB_POOL, MONTHLY, OWNERS, recorded_md5s, run_logger, table_metadata, versioned
from mlplatform.features import (
    COLUMN_LINEAGE,
    FEATURES_TABLE,
    FeatureParams,
    build_features,
    history_start,
)
from mlplatform.params import param
from mlplatform.resources.dvc import DVCResource
from mlplatform.resources.warehouse import Warehouse
from mlplatform.settings import FIRST_MONTH, month_range

# The dependency on earlier months is declared, so a backfill builds a month only after its history.
MAX_LOOKBACK_MONTHS = 12


class FeatureConfig(dg.Config):
    lookback_months: int = Field(
        default=param("features", "lookback_months"),
        ge=1,
        le=MAX_LOOKBACK_MONTHS,
        description="How many months before the partition feed its historical delay rates.",
    )
    smoothing_flights: int = Field(
        default=param("features", "smoothing_flights"),
        ge=0,
        description="Pseudo-count pulling rates with few flights behind them towards the overall rate.",
    )
    delay_threshold_minutes: int = Field(
        default=param("features", "delay_threshold_minutes"),
        ge=0,
        description="A departure later than this is a delay.",
    )


def _column_lineage() -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=dg.AssetKey(asset), column_name=name) for asset, name in sources]
            for column, sources in COLUMN_LINEAGE.items()
        }
    )


@dg.asset(
    partitions_def=MONTHLY,
    group_name="features",
    kinds={"duckdb"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    deps=[
        dg.AssetDep(
            "clean_flights",
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-MAX_LOOKBACK_MONTHS, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
        ),
        "clean_weather",
        "planes",
    ],
)
def flight_features(context: dg.AssetExecutionContext, config: FeatureConfig, duckdb: Warehouse, dvc: DVCResource):
    """One row per scheduled flight of the month: schedule, calendar (weekday, US holidays), route,
    aircraft age, the weather at the origin in the scheduled hour, and carrier, route and origin-hour
    delay rates computed only from earlier months. Label ``is_delayed``: departure more than 15 minutes
    late; cancelled flights have ``is_cancelled`` set and no label."""
    month = context.partition_key
    params = FeatureParams(config.lookback_months, config.smoothing_flights, config.delay_threshold_minutes)
    with run_logger(context) as log, duckdb.get_connection() as con:
        rows = build_features(con, month, params)
        log.info("features built", rows=rows, lookback_months=params.lookback_months)
        rates = (
            f"SELECT avg(is_delayed::DOUBLE), avg(is_cancelled::DOUBLE) FROM {FEATURES_TABLE} WHERE partition_month = ?"
        )
        delay_rate, cancelled_share = con.execute(rates, [month]).fetchall()[0]
        version, data_version = versioned(con, dvc, FEATURES_TABLE, month)
        history = [m for m in month_range(history_start(month, params.lookback_months), month) if m >= FIRST_MONTH]
        inputs = {
            **recorded_md5s(context.instance, "clean_flights", history),
            **recorded_md5s(context.instance, "clean_weather", [month]),
        }
        log.info("features versioned", **version)
        return dg.MaterializeResult(
            data_version=data_version,
            metadata={
                **table_metadata(con, FEATURES_TABLE, month),
                **version,
                # Dagster's input data version of a partitioned dependency is a hash over its partitions'
                # versions; this names each upstream file the features were built from.
                "dvc/inputs": dg.MetadataValue.json(inputs),
                "dagster/column_lineage": _column_lineage(),
                "delay_rate": delay_rate or 0.0,
                "cancelled_share": cancelled_share or 0.0,
                "lookback_months": params.lookback_months,
            },
        )
