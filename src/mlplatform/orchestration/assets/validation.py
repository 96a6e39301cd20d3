"""Validation: each raw period split by its pandera contract into clean rows and quarantined rows."""

import dagster as dg

from mlplatform.data.contracts import Contract
from mlplatform.data.quality import natural_key_unique, quarantine_share, row_conservation
from mlplatform.data.validation import MissingReferenceError, split_partition
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import clean_table, quarantine_table, raw_table
from mlplatform.orchestration.assets.common import (
    DUCKDB_POOL,
    asset_key,
    check_result,
    common,
    one_line_failure,
    partitions,
    run_logger,
    table_metadata,
    versioned,
)
from mlplatform.orchestration.config import run_config, section_schema, with_overrides
from mlplatform.orchestration.resources.dvc import DVCResource
from mlplatform.orchestration.resources.warehouse import Warehouse

ROW_CONSERVATION = "row_conservation"
KEY_UNIQUE = "natural_key_unique"
QUARANTINE_SHARE = "quarantine_share"


def validation_assets(dataset: Dataset) -> list[dg.AssetsDefinition]:
    return [validated_assets(dataset, dataset.contracts[name]) for name in dataset.sources]


def validated_assets(dataset: Dataset, contract: Contract) -> dg.AssetsDefinition:
    clean, quarantine = clean_table(contract.name), quarantine_table(contract.name)
    clean_key, quarantine_key = asset_key(dataset, clean), asset_key(dataset, quarantine)
    raw_key = asset_key(dataset, raw_table(contract.name))
    # The reference tables the contract checks values against (contract.yaml's `references`).
    inputs = [raw_key, *(asset_key(dataset, table) for table in sorted({t for t, _ in contract.references.values()}))]
    shared = common(dataset, "validation")
    settings_declared = dataset.declaration.validation

    @dg.multi_asset(
        name=f"{dataset.name}__validate_{contract.name}",
        partitions_def=partitions(dataset),
        group_name=dataset.name,
        pool=DUCKDB_POOL,
        config_schema=section_schema(settings_declared),
        specs=[
            dg.AssetSpec(
                clean_key,
                deps=inputs,
                kinds={"duckdb", "pandera"},
                owners=shared["owners"],
                tags=shared["tags"],
                description=f"The period's {contract.name} rows that meet the pandera contract.",
            ),
            dg.AssetSpec(
                quarantine_key,
                deps=inputs,
                kinds={"duckdb", "pandera"},
                owners=shared["owners"],
                tags=shared["tags"],
                description=(
                    f"The period's {contract.name} rows that break the contract, kept whole with their line in the "
                    "landing file and the checks each failed (failed_checks: column:check; failures: column, "
                    "check and raw value), never dropped: cells that do not parse, NaN or infinities, lines with "
                    "too few or too many fields, values no reference table has, rows outside the period."
                ),
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                ROW_CONSERVATION, asset=clean_key, blocking=True, description="raw = clean + quarantine, exactly."
            ),
            dg.AssetCheckSpec(KEY_UNIQUE, asset=clean_key, blocking=True, description="No natural key appears twice."),
            dg.AssetCheckSpec(
                QUARANTINE_SHARE,
                asset=clean_key,
                blocking=True,
                description="Quarantined share under the configured limit.",
            ),
        ],
    )
    def validate(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
        period = context.partition_key
        settings = with_overrides(settings_declared, run_config(context))
        with run_logger(context) as log, duckdb.get_connection() as con:
            try:
                counts = split_partition(con, dataset, contract, period)
            except MissingReferenceError as error:
                raise one_line_failure(log, "reference table missing", error) from None
            log.info("partition validated", raw=counts.raw, clean=counts.clean, quarantined=counts.quarantined)
            version, data_version = versioned(con, dvc, dataset, clean, period)
            log.info("clean partition versioned", **version)
            yield dg.MaterializeResult(
                asset_key=clean_key,
                metadata={**table_metadata(con, dataset.table(clean), period, contract), **version},
                data_version=data_version,
            )
            yield dg.MaterializeResult(
                asset_key=quarantine_key, metadata=table_metadata(con, dataset.table(quarantine), period, contract)
            )
            conservation = row_conservation(con, dataset, contract, period)
            yield check_result(conservation, ROW_CONSERVATION, clean_key, dg.AssetCheckSeverity.ERROR)
            key = natural_key_unique(con, dataset.table(clean), contract.natural_key, period)
            yield check_result(key, KEY_UNIQUE, clean_key, dg.AssetCheckSeverity.ERROR)
            share = quarantine_share(con, dataset, contract, period, settings.max_quarantine_share)
            yield check_result(share, QUARANTINE_SHARE, clean_key, dg.AssetCheckSeverity.ERROR)

    return validate
