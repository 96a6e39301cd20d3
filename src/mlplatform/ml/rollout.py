"""Gradual rollout: whether what a canary's share of a period showed lets it step up.

Scoring serves the rows whose bucket is below the canary's share with the canary and scores every row with the
champion too (``mlplatform.ml.scoring``). A period decides a step once its predictions hold enough labelled canary
rows: the canary's realised ROC AUC is compared with the champion's on exactly those rows. The registry records
the decision (``mlplatform.ml.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from mlplatform.data.sql import identifier
from mlplatform.datasets.dataset import PERIOD_COLUMN, PREDICTIONS_TABLE, Dataset
from mlplatform.ml.metrics import roc_auc
from mlplatform.ml.registry import COMPLETED, ROLLED_BACK, STEPPED_UP, Rollout, RolloutStep
from mlplatform.ml.scoring import CHAMPION_SCORE, SERVED_SCORE, canary_bucket_sql

HELD = "held"  # no decision: the period's evidence is not enough, or not of the current step


@dataclass(frozen=True)
class Evidence:
    """What a period's predictions say about a rollout: the labelled rows the canary served, scored by both."""

    labels: np.ndarray
    canary_scores: np.ndarray
    champion_scores: np.ndarray
    canary_rows: int  # rows the canary served, labelled or not
    missed_rows: int  # rows within the current share that another model served: scored at an earlier step


def canary_evidence(con: duckdb.DuckDBPyConnection, dataset: Dataset, period: str, state: Rollout) -> Evidence:
    table, label = dataset.table(PREDICTIONS_TABLE), identifier(dataset.label)
    bucket = canary_bucket_sql(dataset.declaration.features.key)
    params = {"period": period, "canary": state.version, "champion": state.champion_version, "share": state.share}
    [(canary_rows, missed_rows)] = con.execute(
        f"""SELECT count(*) FILTER (WHERE model_version = $canary),
                   count(*) FILTER (WHERE {bucket} < $share AND model_version <> $canary)
            FROM {table} WHERE {PERIOD_COLUMN} = $period""",
        {name: params[name] for name in ("period", "canary", "share")},
    ).fetchall()
    labelled = pl.from_arrow(
        con.execute(
            f"""SELECT {label}::INTEGER AS label, {SERVED_SCORE} AS canary, {CHAMPION_SCORE} AS champion
                FROM {table}
                WHERE {PERIOD_COLUMN} = $period AND model_version = $canary AND champion_version = $champion
                  AND {label} IS NOT NULL""",
            {name: params[name] for name in ("period", "canary", "champion")},
        ).to_arrow_table()
    )
    return Evidence(
        labelled["label"].to_numpy(),
        labelled["canary"].to_numpy(),
        labelled["champion"].to_numpy(),
        canary_rows,
        missed_rows,
    )


def judge(evidence: Evidence, state: Rollout, period: str, tolerance: float, min_rows: int) -> RolloutStep:
    """Step up (or complete, when the next share is the last) while the canary's ROC AUC on its labelled rows
    is within ``tolerance`` of the champion's on the same rows; roll back when it is further below. Hold when
    the period cannot tell: no canary rows, scored at an earlier step, too few labelled rows or one class only."""
    rows = len(evidence.labels)
    held = lambda why: RolloutStep(HELD, why, period, labelled_rows=rows)  # noqa: E731
    if evidence.canary_rows == 0:
        return held(f"{period} has no rows served by the canary {state.version}: it was scored before the rollout")
    if evidence.missed_rows:
        return held(
            f"{period} was scored before the canary served {state.share:.0%}: {evidence.missed_rows} rows of that "
            "share went to another model (score the period again to decide on it)"
        )
    if rows < min_rows or evidence.labels.min() == evidence.labels.max():
        return held(f"{rows} labelled canary rows of both classes needed at least {min_rows}")
    canary, champion = (
        roc_auc(evidence.labels, evidence.canary_scores),
        roc_auc(evidence.labels, evidence.champion_scores),
    )
    measured = {"period": period, "canary_roc_auc": canary, "champion_roc_auc": champion, "labelled_rows": rows}
    against = f"canary ROC AUC {canary:.4f}, champion {champion:.4f} on the same {rows} rows of {period}"
    if canary < champion - tolerance:
        return RolloutStep(ROLLED_BACK, f"{against}: worse by more than {tolerance:.4f}", **measured)
    if state.step + 1 == len(state.steps) - 1:
        return RolloutStep(COMPLETED, f"{against}: within {tolerance:.4f}, it serves every row", **measured)
    next_share = state.steps[state.step + 1]
    return RolloutStep(STEPPED_UP, f"{against}: within {tolerance:.4f}, up to {next_share:.0%}", **measured)
