"""Ingestion: landing files into the warehouse's raw and reference tables."""

import dagster as dg
from pydantic import Field

from mlplatform.assets.common import (
    DUCKDB_POOL,
    MONTHLY,
    OWNERS,
    check_result,
    run_logger,
    table_metadata,
)
from mlplatform.contracts import AIRLINES, AIRPORTS, FLIGHTS, PLANES, WEATHER, Contract
from mlplatform.landing import file_sha256
from mlplatform.markdown import markdown_table
from mlplatform.params import param
from mlplatform.quality import null_shares, volume_vs_trailing_months
from mlplatform.resources.landing import LandingZone
from mlplatform.resources.warehouse import Warehouse
from mlplatform.validation import reference_violations
from mlplatform.warehouse import load_raw_partition, load_reference, raw_table

VOLUME_CHECK = "volume_vs_trailing_months"
NULL_SHARE_CHECK = "null_shares"
CONTRACT_CHECK = "contract"
SOURCE_HASH = "source_sha256"  # the landing file's bytes: the landing sensor compares it to skip unchanged files


class VolumeConfig(dg.Config):
    trailing_months: int = Field(
        default=param("volume", "trailing_months"), ge=1, description="How many earlier months the check compares with."
    )
    tolerance: float = Field(
        default=param("volume", "tolerance"), gt=0, description="Largest relative change in row count that passes."
    )


def raw_monthly_asset(contract: Contract) -> dg.AssetsDefinition:
    table = raw_table(contract)

    @dg.asset(
        name=table,
        partitions_def=MONTHLY,
        group_name="ingestion",
        kinds={"duckdb"},
        owners=OWNERS,
        pool=DUCKDB_POOL,
        description=(
            f"The month's {contract.name} landing file, loaded as is into DuckDB with the contract's column "
            "types. Re-running a month replaces it atomically. A file that cannot be parsed fails the run "
            "with its path, line and what was expected, and leaves the table untouched."
        ),
        check_specs=[
            dg.AssetCheckSpec(VOLUME_CHECK, asset=table, description="Row count against the trailing months."),
            dg.AssetCheckSpec(NULL_SHARE_CHECK, asset=table, description="Null shares within the contract's limits."),
        ],
    )
    def raw_asset(context: dg.AssetExecutionContext, config: VolumeConfig, duckdb: Warehouse, landing: LandingZone):
        month = context.partition_key
        path = landing.monthly_file(contract.name, month)
        with run_logger(context) as log, duckdb.get_connection() as con:
            rows = load_raw_partition(con, contract, month, path)
            log.info("landing file loaded", rows=rows, source=str(path))
            yield dg.MaterializeResult(
                metadata={
                    **table_metadata(con, table, month, contract),
                    "source_file": dg.MetadataValue.path(str(path)),
                    SOURCE_HASH: file_sha256(path),
                }
            )
            volume = volume_vs_trailing_months(con, table, month, config.trailing_months, config.tolerance)
            yield check_result(volume, VOLUME_CHECK, table, dg.AssetCheckSeverity.WARN)
            yield check_result(
                null_shares(con, contract, table, month), NULL_SHARE_CHECK, table, dg.AssetCheckSeverity.WARN
            )

    return raw_asset


def reference_asset(contract: Contract) -> dg.AssetsDefinition:
    @dg.asset(
        name=contract.name,
        group_name="ingestion",
        kinds={"duckdb", "pandera"},
        owners=OWNERS,
        pool=DUCKDB_POOL,
        description=f"Reference table {contract.name}, replaced whole from landing/reference/{contract.name}.csv.",
        check_specs=[
            dg.AssetCheckSpec(
                CONTRACT_CHECK, asset=contract.name, blocking=True, description="Every row meets the pandera contract."
            )
        ],
    )
    def reference(context: dg.AssetExecutionContext, duckdb: Warehouse, landing: LandingZone):
        path = landing.reference_file(contract.name)
        with run_logger(context) as log, duckdb.get_connection() as con:
            rows = load_reference(con, contract, path)
            violations = reference_violations(con, contract)
            log.info("reference table loaded", rows=rows, violations=violations.height, source=str(path))
            yield dg.MaterializeResult(
                metadata={
                    **table_metadata(con, contract.name, contract=contract),
                    "source_file": dg.MetadataValue.path(str(path)),
                    SOURCE_HASH: file_sha256(path),
                }
            )
            yield dg.AssetCheckResult(
                check_name=CONTRACT_CHECK,
                passed=violations.is_empty(),
                description=f"{violations.height} of {rows} rows break the contract",
                metadata={"violations": dg.MetadataValue.md(markdown_table(violations.head(20)))},
            )

    return reference


raw_flights = raw_monthly_asset(FLIGHTS)
raw_weather = raw_monthly_asset(WEATHER)
airlines = reference_asset(AIRLINES)
airports = reference_asset(AIRPORTS)
planes = reference_asset(PLANES)
