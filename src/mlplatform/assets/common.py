"""What every asset module shares: partitions, the DuckDB pool, owners, logging, table metadata and DVC versions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
import structlog

from mlplatform import registry
from mlplatform.catalog import recorded_versions
from mlplatform.contracts import Contract, Field
from mlplatform.logs import get_logger
from mlplatform.quality import Verdict
from mlplatform.resources.dvc import DVCResource
from mlplatform.settings import FIRST_MONTH, LAST_MONTH, next_month
from mlplatform.versioning import export_table
from mlplatform.warehouse import content_hash, partition_row_count

MONTHLY = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, end_date=next_month(LAST_MONTH), fmt="%Y-%m")
# DuckDB allows one writer per file: every asset that writes the warehouse runs in this pool, which
# dagster.yaml limits to one step at a time.
DUCKDB_POOL = "duckdb"
# Steps that call DVC without writing the warehouse (the model artifact) take this one-slot pool.
DVC_POOL = "dvc"
OWNERS = ["team:data-platform"]
# Monthly assets downstream of the champion follow each new month of data (any month, not only the latest:
# the partitions are 2013's and a replay or backfill fills them in order) once a champion exists, but a new
# champion does not rewrite the predictions and monitoring of months already done.
FOLLOW_NEW_MONTHS = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .ignore(dg.AssetSelection.assets("champion_model"))
    & ~dg.AutomationCondition.any_deps_missing()
).with_label("each new month, once a champion exists")


@contextmanager
def run_logger(context: dg.AssetExecutionContext) -> Iterator[structlog.typing.FilteringBoundLogger]:
    """A logger whose every line carries the run id, the asset and the partition."""
    keys = context.assets_def.keys
    asset = ",".join(sorted(key.to_user_string() for key in keys))
    partition = context.partition_key if context.has_partition_key else None
    with structlog.contextvars.bound_contextvars(run_id=context.run.run_id, asset=asset, partition=partition):
        yield get_logger()


def table_metadata(
    con: duckdb.DuckDBPyConnection, table: str, month: str | None = None, contract: Contract | None = None
) -> dict[str, object]:
    """Row count, column schema and content hash of a table (one month of it, if given)."""
    fields = contract.fields if contract else {}
    columns = [
        _column(name, column_type, fields.get(name))
        for name, column_type, *_ in con.execute(f"DESCRIBE {table}").fetchall()
    ]
    rows = (
        partition_row_count(con, table, month)
        if month
        else con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    )
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/table_name": table,
        "content_hash": content_hash(con, table, month),
    }


def versioned(
    con: duckdb.DuckDBPyConnection, dvc: DVCResource, table: str, month: str | None
) -> tuple[dict[str, object], dg.DataVersion]:
    """Export ``table`` (one month of it) as deterministic Parquet and track it with DVC.

    Returns the version's metadata and its md5 as the Dagster data version, so a downstream
    materialization's ``dagster/input_data_version`` tags name the exact upstream file.
    """
    repo = dvc.repo()
    version = repo.track(export_table(con, table, month, repo.version_path(table, month)))
    metadata: dict[str, object] = {"dvc/md5": version.md5, "dvc/path": version.path, "dvc/remote": version.remote}
    if version.git_revision:
        metadata["dvc/git_revision"] = version.git_revision
    return metadata, dg.DataVersion(version.md5)


def recorded_md5s(instance: dg.DagsterInstance, asset: str, partitions: list[str]) -> dict[str, str]:
    """The DVC md5 of the latest materialization of each given partition of ``asset``, keyed ``asset[partition]``."""
    latest = {partition: recorded_versions(instance, asset, partition, limit=1) for partition in partitions}
    return {f"{asset}[{partition}]": versions[0].md5 for partition, versions in latest.items() if versions}


def _column(name: str, column_type: str, spec: Field | None) -> dg.TableColumn:
    if spec is None:
        return dg.TableColumn(name, column_type)
    return dg.TableColumn(
        name,
        column_type,
        description=f"null when {spec.null_reason}" if spec.null_reason else None,
        constraints=dg.TableColumnConstraints(nullable=spec.nullable),
    )


def current_champion(con: duckdb.DuckDBPyConnection) -> registry.Promotion:
    """The registry's champion; a failure saying what to do when there is none yet."""
    champion = registry.champion(con)
    if champion is None:
        raise dg.Failure("there is no champion model yet: run the train_delay_model job first")
    return champion


def check_result(verdict: Verdict, check_name: str, asset: str, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset,
        passed=verdict.passed,
        severity=severity,
        description=verdict.description,
        metadata=verdict.metadata,
    )
