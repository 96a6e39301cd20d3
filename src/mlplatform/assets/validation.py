"""Validation: each raw month split by its pandera contract into clean rows and quarantined rows."""

import dagster as dg
from pydantic import Field

from mlplatform.assets.common import DUCKDB_POOL, MONTHLY, OWNERS, check_result, run_logger, table_metadata, versioned
from mlplatform.contracts import FLIGHTS, WEATHER, Contract
from mlplatform.params import param
from mlplatform.quality import natural_key_unique, quarantine_share, row_conservation
from mlplatform.resources.dvc import DVCResource
from mlplatform.resources.warehouse import Warehouse
from mlplatform.validation import split_partition
from mlplatform.warehouse import clean_table, quarantine_table, raw_table

ROW_CONSERVATION = "row_conservation"
KEY_UNIQUE = "natural_key_unique"
QUARANTINE_SHARE = "quarantine_share"


class ValidationConfig(dg.Config):
    max_quarantine_share: float = Field(
        default=param("validation", "max_quarantine_share"),
        ge=0,
        le=1,
        description="Largest share of a month's rows that may be quarantined before downstream work stops.",
    )


def validated_assets(contract: Contract) -> dg.AssetsDefinition:
    clean, quarantine = clean_table(contract), quarantine_table(contract)

    @dg.multi_asset(
        name=f"validate_{contract.name}",
        partitions_def=MONTHLY,
        group_name="validation",
        pool=DUCKDB_POOL,
        specs=[
            dg.AssetSpec(
                clean,
                deps=[raw_table(contract)],
                kinds={"duckdb", "pandera"},
                owners=OWNERS,
                description=f"The month's {contract.name} rows that meet the pandera contract.",
            ),
            dg.AssetSpec(
                quarantine,
                deps=[raw_table(contract)],
                kinds={"duckdb", "pandera"},
                owners=OWNERS,
                description=(
                    f"The month's {contract.name} rows that break the contract, kept whole with the checks each "
                    "failed (column:check), never dropped."
                ),
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                ROW_CONSERVATION, asset=clean, blocking=True, description="raw = clean + quarantine, exactly."
            ),
            dg.AssetCheckSpec(KEY_UNIQUE, asset=clean, blocking=True, description="No natural key appears twice."),
            dg.AssetCheckSpec(
                QUARANTINE_SHARE,
                asset=clean,
                blocking=True,
                description="Quarantined share under the configured limit.",
            ),
        ],
    )
    def validate(context: dg.AssetExecutionContext, config: ValidationConfig, duckdb: Warehouse, dvc: DVCResource):
        month = context.partition_key
        with run_logger(context) as log, duckdb.get_connection() as con:
            counts = split_partition(con, contract, month)
            log.info("partition validated", raw=counts.raw, clean=counts.clean, quarantined=counts.quarantined)
            version, data_version = versioned(con, dvc, clean, month)
            log.info("clean partition versioned", **version)
            yield dg.MaterializeResult(
                asset_key=clean,
                metadata={**table_metadata(con, clean, month, contract), **version},
                data_version=data_version,
            )
            yield dg.MaterializeResult(asset_key=quarantine, metadata=table_metadata(con, quarantine, month, contract))
            yield check_result(
                row_conservation(con, contract, month), ROW_CONSERVATION, clean, dg.AssetCheckSeverity.ERROR
            )
            key = natural_key_unique(con, clean, contract.natural_key, month)
            yield check_result(key, KEY_UNIQUE, clean, dg.AssetCheckSeverity.ERROR)
            share = quarantine_share(con, contract, month, config.max_quarantine_share)
            yield check_result(share, QUARANTINE_SHARE, clean, dg.AssetCheckSeverity.ERROR)

    return validate


validate_flights = validated_assets(FLIGHTS)
validate_weather = validated_assets(WEATHER)
