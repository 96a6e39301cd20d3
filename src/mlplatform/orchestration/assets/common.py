"""What every dataset's assets share: keys, partitions, the DuckDB pool, logging, table metadata, DVC versions."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import dagster as dg
import duckdb
import structlog

from mlplatform.catalog import recorded_versions
from mlplatform.data.contracts import ColumnContract, Contract
from mlplatform.data.landing import LandingFileError
from mlplatform.data.quality import Verdict
from mlplatform.data.versioning import export_table
from mlplatform.data.warehouse import content_hash, partition_row_count
from mlplatform.datasets import Dataset
from mlplatform.logs import get_logger
from mlplatform.ml import registry
from mlplatform.orchestration.resources.dvc import DVCResource

# DuckDB allows one writer per file: every asset that writes the warehouse runs in this pool, which
# dagster.yaml limits to one step at a time.
DUCKDB_POOL = "duckdb"
# Steps that call DVC without writing the warehouse (the model artifact) take this one-slot pool.
DVC_POOL = "dvc"
POOLS = (DUCKDB_POOL, DVC_POOL)  # every pool an asset takes: `mlplatform pools` creates them before any run
STAGE_TAG = "mlplatform/stage"  # ingestion, validation, features, training, serving or monitoring
# The assets downstream of the champion score and monitor each period on its own data, so the periods waiting at
# once (every landed period when the first champion arrives, a backfill) run as one run over their range: one run
# worker's start-up and one model load instead of one per period. Each period keeps its own metadata.
ONE_RUN_PER_RANGE = dg.BackfillPolicy.single_run()


def asset_key(dataset: Dataset, name: str) -> dg.AssetKey:
    """Every asset key starts with its dataset: ``flights/raw_flights``, ``employment/model``."""
    return dg.AssetKey([dataset.name, name])


@cache
def _partitions(grain_cron: str, start: str, fmt: str) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1: the period under way is a partition too, so today's file can land.
    return dg.TimeWindowPartitionsDefinition(cron_schedule=grain_cron, start=start, fmt=fmt, end_offset=1)


def partitions(dataset: Dataset) -> dg.TimeWindowPartitionsDefinition:
    """The dataset's periods from its first, open-ended (one definition per grain and start)."""
    return _partitions(dataset.periods.cron, dataset.periods.start, dataset.periods.fmt)


def common(dataset: Dataset, stage: str) -> dict:
    """The arguments every asset of ``dataset`` at ``stage`` takes."""
    return {"group_name": dataset.name, "owners": list(dataset.declaration.owners), "tags": {STAGE_TAG: stage}}


def follow_new_periods(dataset: Dataset) -> dg.AutomationCondition:
    """Period assets downstream of the champion follow each new period of data (any period, not only the latest:
    a replay or backfill fills them in order) once a champion exists; a new champion does not rewrite the
    predictions and monitoring of periods already done."""
    return (
        dg.AutomationCondition.eager()
        .without(dg.AutomationCondition.in_latest_time_window())
        .ignore(dg.AssetSelection.assets(asset_key(dataset, "champion_model")))
        & ~dg.AutomationCondition.any_deps_missing()
    ).with_label("each new period, once a champion exists")


def run_periods(context: dg.AssetExecutionContext) -> Iterator[str]:
    """The periods this step materializes, oldest first (one, or a range run as one), each named in the log lines
    written while it is worked on."""
    for period in context.partition_keys:
        with structlog.contextvars.bound_contextvars(partition=period):
            yield period


def periods_check(
    check_name: str, outcomes: dict[str, tuple[bool, str]], metadata: dict[str, object] | None = None
) -> dg.AssetCheckResult:
    """A step's one WARN check result over its periods (``outcomes``: each period's pass and why): it passes when
    every period passes, and says why for each period that failed (for each period when none did)."""
    failed = [period for period, (passed, _) in outcomes.items() if not passed]
    if len(outcomes) == 1:
        [(passed, description)] = outcomes.values()
    else:
        passed = not failed
        description = "; ".join(f"{period}: {outcomes[period][1]}" for period in failed or outcomes)
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"failed_periods": dg.MetadataValue.json(failed), **(metadata or {})},
    )


@contextmanager
def run_logger(context: dg.AssetExecutionContext) -> Iterator[structlog.typing.FilteringBoundLogger]:
    """A logger whose every line carries the run id, the asset and the partition."""
    keys = context.assets_def.keys
    asset = ",".join(sorted(key.to_user_string() for key in keys))
    partition = context.partition_key if context.has_partition_key else None
    with structlog.contextvars.bound_contextvars(run_id=context.run.run_id, asset=asset, partition=partition):
        yield get_logger()


def table_metadata(
    con: duckdb.DuckDBPyConnection, table: str, period: str | None = None, contract: Contract | None = None
) -> dict[str, object]:
    """Row count, column schema and content hash of a (qualified) table, one period of it if given."""
    fields = contract.fields if contract else {}
    columns = [
        _column(name, column_type, fields.get(name))
        for name, column_type, *_ in con.execute(f"DESCRIBE {table}").fetchall()
    ]
    rows = (
        partition_row_count(con, table, period)
        if period
        else con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    )
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/table_name": table.replace('"', ""),
        "content_hash": content_hash(con, table, period),
    }


def versioned(
    con: duckdb.DuckDBPyConnection, dvc: DVCResource, dataset: Dataset, table: str, period: str | None
) -> tuple[dict[str, object], dg.DataVersion]:
    """Export ``table`` of ``dataset`` (one period of it) as deterministic Parquet and track it with DVC.

    Returns the version's metadata and its md5 as the Dagster data version, so a downstream
    materialization's ``dagster/input_data_version`` tags name the exact upstream file.
    """
    repo = dvc.repo()
    target = repo.version_path(f"{dataset.name}/{table}", period)
    version = repo.track(export_table(con, dataset.table(table), period, target))
    metadata: dict[str, object] = {"dvc/md5": version.md5, "dvc/path": version.path, "dvc/remote": version.remote}
    if version.git_revision:
        metadata["dvc/git_revision"] = version.git_revision
    return metadata, dg.DataVersion(version.md5)


def recorded_md5s(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]) -> dict[str, str]:
    """The DVC md5 of the latest materialization of each given partition of ``key``, keyed ``asset[partition]``."""
    latest = {partition: recorded_versions(instance, key, partition, limit=1) for partition in partitions}
    name = key.to_user_string()
    return {f"{name}[{partition}]": versions[0].md5 for partition, versions in latest.items() if versions}


def _column(name: str, column_type: str, spec: ColumnContract | None) -> dg.TableColumn:
    if spec is None:
        return dg.TableColumn(name, column_type)
    return dg.TableColumn(
        name,
        column_type,
        description=f"null when {spec.null_reason}" if spec.null_reason else None,
        constraints=dg.TableColumnConstraints(nullable=spec.nullable),
    )


def current_champion(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> registry.Promotion:
    """The registry's champion of the dataset's model; a failure saying what to do when there is none yet."""
    champion = registry.champion(con, dataset.model.name)
    if champion is None:
        raise dg.Failure(f"{dataset.model.name} has no champion model yet: run the {dataset.name}_training job first")
    return champion


def one_line_failure(log: structlog.typing.FilteringBoundLogger, event: str, error: Exception) -> dg.Failure:
    """The run's failure for an input the asset cannot take (a landing file, a missing reference table): its
    message is the error's one line, which names the file and the problem, with no traceback to read through.
    Raise it ``from None``."""
    log.error(event, error=str(error))
    metadata = {"file": dg.MetadataValue.path(str(error.path))} if isinstance(error, LandingFileError) else {}
    return dg.Failure(description=str(error), metadata=metadata, allow_retries=False)


def check_result(
    verdict: Verdict, check_name: str, key: dg.AssetKey, severity: dg.AssetCheckSeverity
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=key,
        passed=verdict.passed,
        severity=severity,
        description=verdict.description,
        metadata=verdict.metadata,
    )
