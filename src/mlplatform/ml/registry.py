"""The model registry: every trained version of every model with its metrics, the promotions that made
one version each model's champion, and the rollouts that bring a new version in on a growing canary share.

Two DuckDB tables in the warehouse, keyed by model name (a dataset declares its model's name; each name has
its own champion). ``model_versions`` holds one row per artifact version (its DVC md5), written when the
version is evaluated. ``model_promotions`` is a stack per model: promoting pushes a row with when and why
(manual, scheduled, drift, first_training), rolling back marks the top row rolled back, and the champion is the newest
promotion not rolled back. ``model_rollouts`` is a log of rollout events per model (started, stepped_up,
completed, rolled_back, aborted), numbered in order; the newest event says whether a canary serves now, which
share and against which champion (the decisions themselves are ``mlplatform.ml.rollout``'s). Nothing is ever
deleted, so the history answers "which model scored this".

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
ROLLOUTS_TABLE = "model_rollouts"
REASONS = ("manual", "scheduled", "drift", "first_training")
STARTED, STEPPED_UP, COMPLETED, ROLLED_BACK, ABORTED = "started", "stepped_up", "completed", "rolled_back", "aborted"
SERVING = (STARTED, STEPPED_UP)  # a rollout whose newest event is one of these has a canary serving


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


@dataclass(frozen=True)
class Rollout:
    """A version serving a canary share of each period's rows beside the champion, as its newest event left it."""

    model: str
    version: str  # the canary
    champion_version: str  # the champion it is compared with, which serves the other rows
    steps: tuple[float, ...]
    step: int  # the index in ``steps`` of the share it serves now
    reason: str  # why it was trained: the reason of its promotion when it completes
    started_at: dt.datetime
    event_id: int  # the newest event's number

    @property
    def share(self) -> float:
        return self.steps[self.step]

    def describe(self) -> str:
        shares = ", ".join(f"{share:.0%}" for share in self.steps)
        return (
            f"canary {self.version} serves {self.share:.0%} of each period's rows beside champion "
            f"{self.champion_version} (step {self.step + 1} of {len(self.steps)}: {shares}), since "
            f"{self.started_at:%Y-%m-%d %H:%M} UTC"
        )


@dataclass(frozen=True)
class RolloutStep:
    """A decision on a rollout, with the evidence it was taken on (none for a start or an abort)."""

    event: str
    note: str
    period: str | None = None
    canary_roc_auc: float | None = None
    champion_roc_auc: float | None = None
    labelled_rows: int | None = None


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
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {ROLLOUTS_TABLE} (
                model VARCHAR NOT NULL, event_id INTEGER NOT NULL, event_at TIMESTAMPTZ NOT NULL,
                event VARCHAR NOT NULL, version VARCHAR NOT NULL, champion_version VARCHAR NOT NULL,
                steps JSON NOT NULL, step INTEGER NOT NULL, share DOUBLE NOT NULL, reason VARCHAR NOT NULL,
                started_at TIMESTAMPTZ NOT NULL, period VARCHAR, canary_roc_auc DOUBLE, champion_roc_auc DOUBLE,
                labelled_rows BIGINT, note VARCHAR)"""
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
            _check_promotable(con, model, version)
            current = champion(con, model)
            if current and current.version == version:
                return current
            serving = rollout(con, model)
            if serving:
                ended = RolloutStep(COMPLETED, f"promoted whole: {note or reason}")
                if serving.version != version:
                    ended = RolloutStep(ABORTED, f"superseded by the promotion of {version}")
                _log_rollout_event(con, serving, ended)
            return _push_promotion(con, model, version, reason, note)

    return retry_on_conflict(push)


def _check_promotable(con: duckdb.DuckDBPyConnection, model: str, version: str) -> None:
    entry = get_version(con, model, version)
    if entry is None:
        known = ", ".join(v.version for v in versions(con, model)) or "none"
        raise RegistryError(f"{model} version {version} is not registered (registered: {known})")
    if not entry.gate_passed:
        raise RegistryError(f"{model} version {version} failed its gate and cannot be promoted: {entry.gate_reason}")


def _push_promotion(con: duckdb.DuckDBPyConnection, model: str, version: str, reason: str, note: str | None):
    """Push ``version`` onto the promotion stack, inside the caller's transaction."""
    current = champion(con, model)
    con.execute(
        f"INSERT INTO {PROMOTIONS_TABLE} VALUES (?, now(), ?, ?, ?, ?, NULL)",
        [model, version, reason, current.version if current else None, note],
    )
    promoted = champion(con, model)
    assert promoted is not None
    return promoted


def rollback(con: duckdb.DuckDBPyConnection, model: str) -> Promotion:
    """Undo the current champion's promotion; the champion before it scores again. Returns the new champion."""

    def pop() -> Promotion:
        with transaction(con):
            current = champion(con, model)
            if current is None:
                raise RegistryError(f"{model} has no champion to roll back")
            serving = rollout(con, model)
            if serving:  # its comparison was with the champion now rolled back
                _log_rollout_event(con, serving, RolloutStep(ABORTED, f"champion {current.version} rolled back"))
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


def start_rollout(
    con: duckdb.DuckDBPyConnection,
    model: str,
    version: str,
    steps: list[float],
    reason: str,
    note: str | None = None,
) -> Rollout:
    """Let ``version`` (registered, its gate passed) serve the first of ``steps`` beside the champion. A rollout
    already serving another version is aborted, superseded; one already serving this version is returned."""
    if reason not in REASONS:
        raise RegistryError(f"rollout reason must be one of {REASONS}, not {reason!r}")
    if len(steps) < 2 or steps[-1] != 1.0:
        raise RegistryError(f"a rollout steps through shares up to 1.0, not {steps}: promote {version} whole")

    def start() -> Rollout:
        with transaction(con):
            _check_promotable(con, model, version)
            current = champion(con, model)
            if current is None or current.version == version:
                raise RegistryError(f"{version} has no champion to be rolled out beside: promote it whole")
            serving = rollout(con, model)
            if serving and serving.version == version:
                return serving
            if serving:
                _log_rollout_event(con, serving, RolloutStep(ABORTED, f"superseded by {version}"))
            started = Rollout(model, version, current.version, tuple(steps), 0, reason, dt.datetime.now(dt.UTC), 0)
            _log_rollout_event(con, started, RolloutStep(STARTED, note or "its gate passed"), new=True)
            started = rollout(con, model)
        assert started is not None
        return started

    return retry_on_conflict(start)


def rollout(con: duckdb.DuckDBPyConnection, model: str) -> Rollout | None:
    """The rollout of ``model`` serving a canary now, if any."""
    ensure_registry(con)
    rows = con.execute(
        f"SELECT model, version, champion_version, steps, step, reason, started_at, event_id, event "
        f"FROM {ROLLOUTS_TABLE} WHERE model = ? ORDER BY event_id DESC LIMIT 1",
        [model],
    ).fetchall()
    if not rows or rows[0][-1] not in SERVING:
        return None
    model, version, champion_version, steps, step, reason, started_at, event_id, _ = rows[0]
    return Rollout(model, version, champion_version, tuple(json.loads(steps)), step, reason, started_at, event_id)


def record_rollout_step(con: duckdb.DuckDBPyConnection, seen: Rollout, decision: RolloutStep) -> Rollout | None:
    """Apply a decision taken on ``seen`` (the rollout as it stood when its evidence was read): step up,
    complete (the canary is promoted, with the reason it was trained for) or roll back. Returns the rollout
    still serving, if any. Refused when the rollout moved on in between."""
    if decision.event not in (STEPPED_UP, COMPLETED, ROLLED_BACK, ABORTED):
        raise RegistryError(f"{decision.event!r} is no rollout decision")

    def record() -> Rollout | None:
        with transaction(con):
            current = rollout(con, seen.model)
            if current is None or current.event_id != seen.event_id:
                raise RegistryError(f"the rollout of {seen.model} {seen.version} changed while it was being decided")
            _log_rollout_event(con, current, decision)
            if decision.event == COMPLETED:
                _push_promotion(con, seen.model, seen.version, seen.reason, f"rollout completed: {decision.note}")
            return rollout(con, seen.model)

    return retry_on_conflict(record)


def abort_rollout(con: duckdb.DuckDBPyConnection, model: str, note: str) -> Rollout:
    """Stop the canary of ``model`` by hand; the champion serves every row again. Returns the rollout stopped."""
    serving = rollout(con, model)
    if serving is None:
        raise RegistryError(f"{model} has no rollout under way")
    record_rollout_step(con, serving, RolloutStep(ABORTED, note))
    return serving


def rollout_history(con: duckdb.DuckDBPyConnection, model: str) -> list[dict[str, Any]]:
    """Every rollout event of ``model``, newest first."""
    ensure_registry(con)
    cursor = con.execute(
        f"SELECT event_at, event, version, champion_version, period, share, canary_roc_auc, champion_roc_auc, "
        f"labelled_rows, note FROM {ROLLOUTS_TABLE} WHERE model = ? ORDER BY event_id DESC",
        [model],
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _log_rollout_event(
    con: duckdb.DuckDBPyConnection, state: Rollout, decision: RolloutStep, new: bool = False
) -> None:
    """Append ``decision`` on ``state`` to the rollout log, inside the caller's transaction, with the share that
    serves after it: the next step's, all rows when completed, none when rolled back or aborted."""
    step = state.step + (decision.event in (STEPPED_UP, COMPLETED))
    share = {COMPLETED: 1.0, ROLLED_BACK: 0.0, ABORTED: 0.0}.get(
        decision.event, state.steps[min(step, len(state.steps) - 1)]
    )
    con.execute(
        f"""INSERT INTO {ROLLOUTS_TABLE}
            SELECT ?, coalesce(max(event_id), 0) + 1, now(), ?, ?, ?, ?::JSON, ?, ?, ?,
                   {"now()" if new else "?::TIMESTAMPTZ"}, ?, ?, ?, ?, ?
            FROM {ROLLOUTS_TABLE} WHERE model = ?""",
        [
            state.model,
            decision.event,
            state.version,
            state.champion_version,
            json.dumps(list(state.steps)),
            min(step, len(state.steps) - 1),
            share,
            state.reason,
            *([] if new else [state.started_at]),
            decision.period,
            decision.canary_roc_auc,
            decision.champion_roc_auc,
            decision.labelled_rows,
            decision.note,
            state.model,
        ],
    )


def _model_version(row: tuple) -> ModelVersion:
    model, version, registered_at, target_period, window, data_version, metrics, passed, reason = row
    return ModelVersion(
        model, version, target_period, window, data_version, json.loads(metrics), passed, reason, registered_at
    )
