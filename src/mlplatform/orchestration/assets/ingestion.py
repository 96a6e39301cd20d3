"""Ingestion: a dataset's landing files into its raw and reference tables."""

import dagster as dg
import structlog

from mlplatform.data.contracts import Contract
from mlplatform.data.landing import LandingFileError, file_sha256
from mlplatform.data.quality import null_shares, volume_vs_trailing_periods
from mlplatform.data.validation import reference_violations
from mlplatform.data.warehouse import load_raw_partition, load_reference
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import raw_table
from mlplatform.markdown import markdown_table
from mlplatform.orchestration.assets.common import (
    DUCKDB_POOL,
    asset_key,
    check_result,
    common,
    one_line_failure,
    partitions,
    run_logger,
    table_metadata,
)
from mlplatform.orchestration.config import run_config, section_schema, with_overrides
from mlplatform.orchestration.resources.landing import LandingZone
from mlplatform.orchestration.resources.warehouse import Warehouse

VOLUME_CHECK = "volume_vs_trailing_periods"
NULL_SHARE_CHECK = "null_shares"
CONTRACT_CHECK = "contract"
SOURCE_HASH = "source_sha256"  # the landing file's bytes: the landing sensor compares it to skip unchanged files
# On a landing sensor's run queued behind another of the same tick: that run's run key.
AFTER_TAG = "mlplatform/landing_after"


def ingestion_assets(dataset: Dataset) -> list[dg.AssetsDefinition]:
    sources = [raw_period_asset(dataset, dataset.contracts[name]) for name in dataset.sources]
    return sources + [reference_asset(dataset, dataset.contracts[name]) for name in dataset.reference]


def raw_period_asset(dataset: Dataset, contract: Contract) -> dg.AssetsDefinition:
    table = raw_table(contract.name)
    key = asset_key(dataset, table)
    volume = dataset.declaration.volume

    @dg.asset(
        key=key,
        partitions_def=partitions(dataset),
        kinds={"duckdb"},
        pool=DUCKDB_POOL,
        config_schema=section_schema(volume),
        description=(
            f"The period's {contract.name} landing file, loaded as is into DuckDB with the contract's column "
            "types, one row for each of its records with the record's line. A record that cannot be read whole "
            "is kept with its load failures, for validation to quarantine. Re-running a period replaces it "
            "atomically. A file wrong as a whole (no header, missing or unknown columns, not text, no rows) "
            "fails the run with one line naming the file, the problem and what was expected, and leaves the "
            "table untouched."
        ),
        check_specs=[
            dg.AssetCheckSpec(VOLUME_CHECK, asset=key, description="Row count against the trailing periods."),
            dg.AssetCheckSpec(NULL_SHARE_CHECK, asset=key, description="Null shares within the contract's limits."),
        ],
        **common(dataset, "ingestion"),
    )
    def raw_asset(context: dg.AssetExecutionContext, duckdb: Warehouse, landing: LandingZone):
        period = context.partition_key
        settings = with_overrides(volume, run_config(context))
        qualified = dataset.table(table)
        with run_logger(context) as log:
            held_back_by_failed_run(context, log)
        with run_logger(context) as log, duckdb.get_connection() as con:
            try:
                path = landing.period_file(dataset, contract.name, period)
                rows = load_raw_partition(con, dataset, contract, period, path)
            except (LandingFileError, FileNotFoundError) as error:
                raise one_line_failure(log, "landing file refused", error) from None
            log.info("landing file loaded", rows=rows, source=str(path))
            yield dg.MaterializeResult(
                metadata={
                    **table_metadata(con, qualified, period, contract),
                    "source_file": dg.MetadataValue.path(str(path)),
                    SOURCE_HASH: file_sha256(path),
                }
            )
            verdict = volume_vs_trailing_periods(con, qualified, period, settings.trailing_periods, settings.tolerance)
            yield check_result(verdict, VOLUME_CHECK, key, dg.AssetCheckSeverity.WARN)
            nulls = null_shares(con, contract, qualified, period)
            yield check_result(nulls, NULL_SHARE_CHECK, key, dg.AssetCheckSeverity.WARN)

    return raw_asset


def held_back_by_failed_run(context: dg.AssetExecutionContext, log: structlog.typing.FilteringBoundLogger) -> None:
    """Fail, loading nothing, when the landing run queued before this one (``AFTER_TAG``) did not succeed: this
    period's features would read a hole where that period should be. The landing sensor asks again once the period
    before is loaded (the run key names the periods not loaded before it)."""
    after = context.run.tags.get(AFTER_TAG)
    if after is None:
        return
    sensor = context.run.tags.get("dagster/sensor_name")
    before = context.instance.get_runs(
        dg.RunsFilter(tags={"dagster/run_key": after, "dagster/sensor_name": sensor}), limit=1
    )
    if before and before[0].status == dg.DagsterRunStatus.SUCCESS:
        return
    period = before[0].tags.get("dagster/partition", "the reference tables") if before else after.split(":")[0]
    status = before[0].status.value.lower() if before else "missing"
    message = f"held back: the landing run of {period} before it is {status} (run key {after})"
    log.error("landing run held back", before=period, status=status)
    raise dg.Failure(description=message, allow_retries=False)


def reference_asset(dataset: Dataset, contract: Contract) -> dg.AssetsDefinition:
    key = asset_key(dataset, contract.name)

    @dg.asset(
        key=key,
        kinds={"duckdb", "pandera"},
        pool=DUCKDB_POOL,
        description=(
            f"Reference table {contract.name}, replaced whole from its file in the landing zone. A file with a "
            "row that cannot be read, or with no rows, fails the run with one line naming it and leaves the "
            "table as it was."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                CONTRACT_CHECK, asset=key, blocking=True, description="Every row meets the pandera contract."
            )
        ],
        **common(dataset, "ingestion"),
    )
    def reference(context: dg.AssetExecutionContext, duckdb: Warehouse, landing: LandingZone):
        with run_logger(context) as log, duckdb.get_connection() as con:
            try:
                path = landing.reference_file(dataset, contract.name)
                rows = load_reference(con, dataset, contract, path)
            except (LandingFileError, FileNotFoundError) as error:
                raise one_line_failure(log, "landing file refused", error) from None
            violations = reference_violations(con, dataset, contract)
            log.info("reference table loaded", rows=rows, violations=violations.height, source=str(path))
            yield dg.MaterializeResult(
                metadata={
                    **table_metadata(con, dataset.table(contract.name), contract=contract),
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
