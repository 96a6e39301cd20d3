"""What the Dagster event log records: data versions (for `mlplatform versions` and `restore`) and the latest
metadata of an asset, which the sensors and the replay decide from."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

MAX_VERSIONS = 10_000


def as_key(asset: str | dg.AssetKey) -> dg.AssetKey:
    """An asset key from a key or its user string (``flights/raw_flights``)."""
    return asset if isinstance(asset, dg.AssetKey) else dg.AssetKey.from_user_string(asset)


@dataclass(frozen=True)
class RecordedVersion:
    asset: str
    partition: str | None
    md5: str
    path: str
    run_id: str
    recorded_at: dt.datetime


def recorded_versions(
    instance: dg.DagsterInstance, asset: str | dg.AssetKey, partition: str | None = None, limit: int = MAX_VERSIONS
) -> list[RecordedVersion]:
    """The DVC versions of ``asset`` (one partition of it, if given) that its latest ``limit`` materializations
    recorded, newest first."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=as_key(asset), asset_partitions=[partition] if partition else None),
        limit=limit,
    ).records
    versions = []
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or "dvc/md5" not in materialization.metadata:
            continue
        versions.append(
            RecordedVersion(
                asset=as_key(asset).to_user_string(),
                partition=materialization.partition,
                md5=materialization.metadata["dvc/md5"].value,
                path=materialization.metadata["dvc/path"].value,
                run_id=record.run_id,
                recorded_at=dt.datetime.fromtimestamp(record.timestamp, tz=dt.UTC),
            )
        )
    return versions


def latest_metadata(
    instance: dg.DagsterInstance, asset: str | dg.AssetKey, partition: str | None = None, run_id: str | None = None
) -> dict | None:
    """The metadata values of the latest materialization of ``asset`` (one partition of it; by one run, if
    given), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=as_key(asset), asset_partitions=[partition] if partition else None),
        limit=1 if run_id is None else 100,
    ).records
    records = [record for record in records if run_id is None or record.run_id == run_id]
    if not records or records[0].asset_materialization is None:
        return None
    return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}


def every_recorded_md5(instance: dg.DagsterInstance) -> set[str]:
    """The md5 of every DVC version any materialization in the event log recorded."""
    return {version.md5 for key in instance.get_asset_keys() for version in recorded_versions(instance, key)}
