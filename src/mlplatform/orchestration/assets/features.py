"""Features: a dataset's ``features`` table, one row per key and period, built by its feature SQL point in time."""

import dagster as dg

from mlplatform.data.features import build_features, history_periods
from mlplatform.data.sql import identifier
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, clean_table
from mlplatform.orchestration.assets.common import (
    DUCKDB_POOL,
    asset_key,
    common,
    partitions,
    recorded_md5s,
    run_logger,
    table_metadata,
    versioned,
)
from mlplatform.orchestration.config import config_schema, run_config
from mlplatform.orchestration.resources.dvc import DVCResource
from mlplatform.orchestration.resources.warehouse import Warehouse

LOOKBACK = "lookback_periods"


def _column_lineage(dataset: Dataset) -> dg.TableColumnLineage:
    def source_key(table: str) -> dg.AssetKey:
        return asset_key(dataset, clean_table(table) if table in dataset.sources else table)

    return dg.TableColumnLineage(
        deps_by_column={
            column: [
                dg.TableColumnDep(asset_key=source_key(source.split(".")[0]), column_name=source.split(".")[1])
                for source in sources
            ]
            for column, sources in dataset.declaration.features.lineage.items()
        }
    )


def features_asset(dataset: Dataset) -> dg.AssetsDefinition:
    declared = dataset.declaration.features
    # The dependency on earlier periods is declared, so a backfill builds a period only after its history.
    history = dg.TimeWindowPartitionMapping(
        start_offset=-declared.lookback_periods, end_offset=0, allow_nonexistent_upstream_partitions=True
    )
    deps = [
        dg.AssetDep(asset_key(dataset, clean_table(source)), partition_mapping=history) for source in dataset.sources
    ] + [asset_key(dataset, table) for table in dataset.reference]
    label = dataset.label

    @dg.asset(
        key=asset_key(dataset, FEATURES_TABLE),
        partitions_def=partitions(dataset),
        kinds={"duckdb"},
        pool=DUCKDB_POOL,
        deps=deps,
        config_schema=config_schema(
            {**declared.params, LOOKBACK: declared.lookback_periods},
            {LOOKBACK: "How many periods before the partition the history_* views hold (at most the declared)."},
        ),
        description=(
            f"One row per {', '.join(declared.key)} of the period, built by {declared.sql} from the period's clean "
            f"rows, the {declared.lookback_periods} periods before it and the reference tables, never from later "
            f"periods. Label: {label}."
        ),
        **common(dataset, "features"),
    )
    def features(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
        period = context.partition_key
        config = {**declared.params, LOOKBACK: declared.lookback_periods, **run_config(context)}
        lookback = config.pop(LOOKBACK)
        if not 0 <= lookback <= declared.lookback_periods:
            raise dg.Failure(f"{LOOKBACK} must be between 0 and the declared {declared.lookback_periods}")
        table = dataset.table(FEATURES_TABLE)
        with run_logger(context) as log, duckdb.get_connection() as con:
            rows = build_features(con, dataset, period, config, lookback)
            log.info("features built", rows=rows, lookback_periods=lookback)
            positive_share = con.execute(
                f"SELECT avg({identifier(label)}::DOUBLE) FROM {table} WHERE {PERIOD_COLUMN} = ?", [period]
            ).fetchall()[0][0]
            version, data_version = versioned(con, dvc, dataset, FEATURES_TABLE, period)
            history = [*history_periods(dataset, period, lookback), period]
            inputs = {}
            for source in dataset.sources:
                sourced = history if lookback else [period]
                inputs |= recorded_md5s(context.instance, asset_key(dataset, clean_table(source)), sourced)
            log.info("features versioned", **version)
            metadata = {
                **table_metadata(con, table, period),
                **version,
                # Dagster's input data version of a partitioned dependency is a hash over its partitions'
                # versions; this names each upstream file the features were built from.
                "dvc/inputs": dg.MetadataValue.json(inputs),
                f"{label}_share": positive_share if positive_share is not None else float("nan"),
                LOOKBACK: lookback,
            }
            if declared.lineage:
                metadata["dagster/column_lineage"] = _column_lineage(dataset)
            return dg.MaterializeResult(data_version=data_version, metadata=metadata)

    return features
