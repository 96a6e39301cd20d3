"""The model registry: every trained version of every model with its metrics, and the promotions that made
one version each model's champion.

Two DuckDB tables in the warehouse, keyed by model name (a dataset declares its model's name; each name has
its own champion). ``model_versions`` holds one row per artifact version (its DVC md5), written when the
version is evaluated. ``model_promotions`` is a stack per model: promoting pushes a row with when and why
(manual, scheduled, drift), rolling back marks the top row rolled back, and the champion is the newest
promotion not rolled back. Nothing is ever deleted, so the history answers "which model scored this".

No PRIMARY KEY: DuckLake has no constraints, so ``register`` upserts with MERGE, on a DuckDB file and a DuckLake
alike. Every write is one transaction, run again whole when it conflicts with another writer.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from mlplatform.data.lake import retry_on_conflict
from mlplatform.data.warehouse import transaction

VERSIONS_TABLE = "model_versions"
PROMOTIONS_TABLE = "model_promotions"
REASONS = ("manual", "scheduled", "drift")


class RegistryError(ValueError):
    """A promotion or rollback that cannot be done, with the reason."""


@dataclass(frozen=True)
class ModelVersion:
    model: str  # the model's name
    version: str  # the artifact folder's DVC md5
    target_period: str
    window: str
    training_data_version: str
    metrics: dict[str, float]  # on the held-out month
    gate_passed: bool
    gate_reason: str
    registered_at: dt.datetime | None = None


@dataclass(frozen=True)
class Promotion:
    model: str
    version: str
    reason: str
    promoted_at: dt.datetime
    previous_version: str | None
    note: str | None


def ensure_registry(con: duckdb.DuckDBPyConnection) -> None:
    """Create the registry's tables where they do not exist yet (again on a conflict: two processes reading an
    empty lake may both create them)."""

    def create() -> None:
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
                model VARCHAR NOT NULL, version VARCHAR NOT NULL, registered_at TIMESTAMPTZ NOT NULL,
                target_period VARCHAR NOT NULL,
                "window" VARCHAR NOT NULL, training_data_version VARCHAR NOT NULL, metrics JSON NOT NULL,
                gate_passed BOOLEAN NOT NULL, gate_reason VARCHAR NOT NULL)"""
        )
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {PROMOTIONS_TABLE} (
                model VARCHAR NOT NULL, promoted_at TIMESTAMPTZ NOT NULL, version VARCHAR NOT NULL,
                reason VARCHAR NOT NULL, previous_version VARCHAR, note VARCHAR, rolled_back_at TIMESTAMPTZ)"""
        )

    retry_on_conflict(create)


def register(con: duckdb.DuckDBPyConnection, model: ModelVersion) -> None:
    """Record (or re-record, after a re-evaluation) a version and its evaluation: one row per model and version."""
    values = [
        model.model,
        model.version,
        model.target_period,
        model.window,
        model.training_data_version,
        json.dumps(model.metrics),
        model.gate_passed,
        model.gate_reason,
    ]

    def upsert() -> None:
        ensure_registry(con)
        con.execute(
            f"""MERGE INTO {VERSIONS_TABLE} AS v
                USING (SELECT ? AS model, ? AS version, now() AS registered_at, ? AS target_period, ? AS "window",
                              ? AS training_data_version, ?::JSON AS metrics, ? AS gate_passed, ? AS gate_reason) AS s
                ON v.model = s.model AND v.version = s.version
                WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *""",
            values,
        )

    retry_on_conflict(upsert)


def get_version(con: duckdb.DuckDBPyConnection, model: str, version: str) -> ModelVersion | None:
    ensure_registry(con)
    rows = con.execute(f"SELECT * FROM {VERSIONS_TABLE} WHERE model = ? AND version = ?", [model, version]).fetchall()
    return _model_version(rows[0]) if rows else None


def resolve_version(con: duckdb.DuckDBPyConnection, model: str, prefix: str) -> str:
    """The registered version of ``model`` that ``prefix`` (a whole md5 or its start) names unambiguously."""
    matches = [entry.version for entry in versions(con, model) if entry.version.startswith(prefix)]
    if len(matches) != 1:
        found = "no registered version" if not matches else f"{len(matches)} versions ({', '.join(matches)})"
        raise RegistryError(f"{prefix!r} matches {found} of {model}: `mlplatform models` lists them")
    return matches[0]


def versions(con: duckdb.DuckDBPyConnection, model: str | None = None) -> list[ModelVersion]:
    """Every registered version (of ``model``, if given), newest first."""
    ensure_registry(con)
    rows = con.execute(
        f"SELECT * FROM {VERSIONS_TABLE} WHERE $model IS NULL OR model = $model ORDER BY registered_at DESC, version",
        {"model": model},
    ).fetchall()
    return [_model_version(row) for row in rows]


def champion(con: duckdb.DuckDBPyConnection, model: str) -> Promotion | None:
    """The newest promotion of ``model`` not rolled back: the version that scores now."""
    ensure_registry(con)
    rows = con.execute(
        f"SELECT model, version, reason, promoted_at, previous_version, note FROM {PROMOTIONS_TABLE} "
        "WHERE model = ? AND rolled_back_at IS NULL ORDER BY promoted_at DESC LIMIT 1",
        [model],
    ).fetchall()
    return Promotion(*rows[0]) if rows else None


def challenger(con: duckdb.DuckDBPyConnection, model: str) -> ModelVersion | None:
    """The newest registered version of ``model``, when it is not the champion: the one scored in its shadow."""
    current = champion(con, model)
    newest = versions(con, model)[:1]
    if not newest or (current and newest[0].version == current.version):
        return None
    return newest[0]


def promote(
    con: duckdb.DuckDBPyConnection, model: str, version: str, reason: str, note: str | None = None
) -> Promotion:
    """Make ``version`` the champion of ``model``. It must be registered and have passed its gate."""
    if reason not in REASONS:
        raise RegistryError(f"promotion reason must be one of {REASONS}, not {reason!r}")

    def push() -> Promotion:
        with transaction(con):
            entry = get_version(con, model, version)
            if entry is None:
                known = ", ".join(v.version for v in versions(con, model)) or "none"
                raise RegistryError(f"{model} version {version} is not registered (registered: {known})")
            if not entry.gate_passed:
                raise RegistryError(
                    f"{model} version {version} failed its gate and cannot be promoted: {entry.gate_reason}"
                )
            current = champion(con, model)
            if current and current.version == version:
                return current
            con.execute(
                f"INSERT INTO {PROMOTIONS_TABLE} VALUES (?, now(), ?, ?, ?, ?, NULL)",
                [model, version, reason, current.version if current else None, note],
            )
            promoted = champion(con, model)
        assert promoted is not None
        return promoted

    return retry_on_conflict(push)


def rollback(con: duckdb.DuckDBPyConnection, model: str) -> Promotion:
    """Undo the current champion's promotion; the champion before it scores again. Returns the new champion."""

    def pop() -> Promotion:
        with transaction(con):
            current = champion(con, model)
            if current is None:
                raise RegistryError(f"{model} has no champion to roll back")
            con.execute(
                f"UPDATE {PROMOTIONS_TABLE} SET rolled_back_at = now() "
                "WHERE model = ? AND promoted_at = ? AND version = ?",
                [model, current.promoted_at, current.version],
            )
            restored = champion(con, model)
            if restored is None:
                raise RegistryError(f"{current.version} is the first champion: there is no earlier one to roll back to")
        return restored

    return retry_on_conflict(pop)


def promotion_history(con: duckdb.DuckDBPyConnection, model: str) -> list[dict[str, Any]]:
    """Every promotion of ``model``, newest first, with whether it was rolled back."""
    ensure_registry(con)
    cursor = con.execute(f"SELECT * FROM {PROMOTIONS_TABLE} WHERE model = ? ORDER BY promoted_at DESC", [model])
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _model_version(row: tuple) -> ModelVersion:
    model, version, registered_at, target_period, window, data_version, metrics, passed, reason = row
    return ModelVersion(
        model, version, target_period, window, data_version, json.loads(metrics), passed, reason, registered_at
    )
