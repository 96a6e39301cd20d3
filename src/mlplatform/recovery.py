"""Disaster recovery: ``mlplatform backup`` writes what the DVC remote needs to stand alone into it, and
``mlplatform recover`` rebuilds an empty platform from that remote: the warehouse's versioned tables, the reference
tables, the registry, each model's champion artifact, and the event log's record of every version.

Not rebuilt: the raw and quarantine tables and the landing files (re-materialize periods from landed files to have
them again), and what only the event log held (runs, check results, the monitoring assets' metadata). Recovered
versions are recorded as runless materializations carrying ``recovered_from``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from mlplatform.backup import (
    REGISTRY,
    BackupError,
    Entry,
    backups,
    backups_location,
    check_entry,
    load_registry,
    load_version,
    read_manifest,
    registry_tables,
    table_exists,
    tables_with_rows,
    version_file,
    versioned_tables,
    write_manifest,
)
from mlplatform.catalog import as_key, every_recorded_md5, recorded_versions
from mlplatform.data.sql import identifier
from mlplatform.data.versioning import DVCRepo, export_table
from mlplatform.data.warehouse import content_hash
from mlplatform.datasets import all_datasets
from mlplatform.ml import registry

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


@dataclass(frozen=True)
class BackupReport:
    manifest: str  # where it was written
    versions: int  # recorded by materializations, the earlier ones included
    snapshots: int  # reference and registry tables exported by the backup
    seconds: float


@dataclass(frozen=True)
class RecoveryReport:
    manifest: str
    tables: int  # table versions loaded into the warehouse
    rows: int
    champions: dict[str, str]  # model -> champion version, its artifact checked out
    recorded: int  # versions recorded in the event log
    seconds: dict[str, float]  # per phase: pull, load, champions, record


def backup(instance: dg.DagsterInstance, repo: DVCRepo, connect: Connect) -> BackupReport:
    """Export the reference and registry tables as versions, check that the remote holds every version the event log
    records (pushing any the cache has and the remote lacks), and write the manifest into the remote."""
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    repo.ensure_initialised()
    entries = list(_recorded_entries(instance))
    snapshots: dict[str, Path] = {}
    with connect() as con:
        for dataset in all_datasets().values():
            for table in dataset.reference:
                if table_exists(con, dataset.name, table):
                    asset = f"{dataset.name}/{table}"
                    snapshots[asset] = export_table(con, dataset.table(table), None, repo.version_path(asset, None))
        for table in registry_tables(con):
            asset = f"{REGISTRY}/{table}"
            snapshots[asset] = export_table(con, identifier(table), None, repo.version_path(asset, None))
    tracked = repo.track_all(list(snapshots.values()))
    entries += [Entry(asset, None, v.md5, now, True, True) for asset, v in zip(snapshots, tracked, strict=True)]
    missing = repo.missing_from_remote({entry.md5 for entry in entries})
    if missing:
        raise BackupError(
            f"the remote lacks {len(missing)} recorded versions that the cache lacks too, so no backup can hold them: "
            f"{', '.join(missing[:5])}"
        )
    manifest = write_manifest(repo, entries, now)
    return BackupReport(manifest, len(entries) - len(snapshots), len(snapshots), time.monotonic() - started)


def _recorded_entries(instance: dg.DagsterInstance) -> Iterator[Entry]:
    """Every version the event log records for a dataset's versioned tables and model, the newest of each asset
    and partition marked current."""
    for dataset in all_datasets().values():
        for key in sorted(instance.get_asset_keys()):
            if key.path[0] != dataset.name or key.path[-1] not in versioned_tables(dataset):
                continue
            seen: set[str | None] = set()
            for version in recorded_versions(instance, key):  # newest first
                current = version.partition not in seen
                seen.add(version.partition)
                yield Entry(version.asset, version.partition, version.md5, version.recorded_at, current, snapshot=False)


def recover(instance: dg.DagsterInstance, repo: DVCRepo, connect: Connect, name: str | None = None) -> RecoveryReport:
    """Rebuild an empty platform from the backup ``name`` in the remote (default: the newest)."""
    found = backups(repo)
    if not found:
        raise BackupError(f"no backup in {backups_location(repo)}: `mlplatform backup` writes one")
    name = name or found[-1]
    entries = read_manifest(repo, name)
    datasets = all_datasets()
    with connect() as con:
        filled = tables_with_rows(con)
        if filled:
            raise BackupError(f"recovery fills an empty warehouse; this one holds {', '.join(filled[:5])}")
        if every_recorded_md5(instance):
            raise BackupError("recovery fills an empty platform; this Dagster instance already records versions")
        known = set(registry_tables(con))
        for entry in entries:
            check_entry(entry, datasets, known)
    seconds = {}
    started = time.monotonic()
    wanted = [entry for entry in entries if entry.current]
    repo.check_out({version_file(repo, entry): entry.md5 for entry in wanted})
    seconds["pull"] = time.monotonic() - started

    started, rows, hashes = time.monotonic(), 0, {}
    with connect() as con:
        load_registry(con, {e.table: version_file(repo, e) for e in wanted if e.owner == REGISTRY})
        for entry in wanted:
            if entry.owner == REGISTRY or entry.md5.endswith(".dir"):
                continue
            dataset = datasets[entry.owner]
            rows += load_version(con, dataset, entry, version_file(repo, entry))
            hashes[entry] = content_hash(con, dataset.table(entry.table), entry.partition)
        seconds["load"] = time.monotonic() - started

        started = time.monotonic()
        champions = _check_out_champions(con, repo)
        seconds["champions"] = time.monotonic() - started

        started = time.monotonic()
        recorded = _record(instance, repo, con, entries, hashes, name)
        seconds["record"] = time.monotonic() - started
    return RecoveryReport(name, len(hashes), rows, champions, recorded, seconds)


def _check_out_champions(con: duckdb.DuckDBPyConnection, repo: DVCRepo) -> dict[str, str]:
    """Each model's champion artifact, fetched and checked file by file (it may be an earlier version than the
    dataset's newest model)."""
    from mlplatform.ml.artifact import artifact_folder

    champions = {}
    for dataset in all_datasets().values():
        champion = registry.champion(con, dataset.model.name)
        if champion:
            artifact_folder(repo, champion.version)
            champions[dataset.model.name] = champion.version
    return champions


def _record(
    instance: dg.DagsterInstance,
    repo: DVCRepo,
    con: duckdb.DuckDBPyConnection,
    entries: list[Entry],
    hashes: dict[Entry, str],
    name: str,
) -> int:
    """Record every version the backup lists as a runless materialization, oldest first (so each asset's newest is
    its latest again, and ``mlplatform gc`` keeps them all), then each dataset's champion."""
    from mlplatform.orchestration.assets.common import asset_key
    from mlplatform.orchestration.assets.serving import CHAMPION, champion_metadata

    recorded = sorted((entry for entry in entries if not entry.snapshot), key=lambda entry: entry.recorded_at)
    for entry in recorded:
        metadata = {
            "dvc/md5": entry.md5,
            "dvc/path": version_file(repo, entry).relative_to(repo.root).as_posix(),
            "recovered_from": name,
            "recorded_at": entry.recorded_at.isoformat(),
        }
        if entry in hashes:
            metadata["content_hash"] = hashes[entry]
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                as_key(entry.asset),
                partition=entry.partition,
                metadata=metadata,
                tags={"dagster/data_version": entry.md5},
            )
        )
    for dataset in all_datasets().values():
        champion = registry.champion(con, dataset.model.name)
        if champion:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key(dataset, CHAMPION),
                    metadata={**champion_metadata(con, dataset.model.name), "recovered_from": name},
                    tags={"dagster/data_version": champion.version},
                )
            )
    return len(recorded)
