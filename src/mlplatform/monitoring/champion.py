"""Monitoring a champion: reference profiles saved with each model version, the period's feature and score
drift against them, its performance once labels arrive, and the decision to retrain.

The profiles are computed once, at training, from the exact versioned training set (DuckDB reads the
Parquet file), so monitoring never rescans training data: a period is compared with the saved JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from mlplatform.data.sql import sql_string
from mlplatform.datasets.declaration import MonitoringSection
from mlplatform.datasets.periods import Periods
from mlplatform.ml.evaluation import summary
from mlplatform.monitoring import drift

REFERENCE_FILE = "reference_profile.json"
SCORE_COLUMN = "probability"
# The population stability index from which a shift counts as major (the credit-scoring convention: under 0.1 no
# change, 0.1-0.25 some, above 0.25 major). A feature at or beyond it is treated as if its link to the label
# were lost altogether.
MAJOR_PSI = 0.25


def monitored_columns(categorical: list[str], numeric: list[str]) -> dict[str, drift.Kind]:
    """The model's features, each with the kind of drift test it gets."""
    return {**{column: "categorical" for column in categorical}, **{column: "numeric" for column in numeric}}


def save_reference_profiles(
    folder: Path,
    training_set: Path,
    train_filter_sql: str,
    holdout_scores: np.ndarray,
    columns: dict[str, drift.Kind],
) -> dict[str, Any]:
    """Profile the training rows' features and the held-out period's scores; write them into ``folder``."""
    with duckdb.connect() as con:
        con.register("holdout_scores", pl.DataFrame({SCORE_COLUMN: holdout_scores}).to_arrow())
        training_rows = f"SELECT * FROM read_parquet({sql_string(training_set)}) WHERE {train_filter_sql}"
        profiles = {
            "features": drift.profile(con, training_rows, columns),
            "predictions": drift.profile(con, "holdout_scores", {SCORE_COLUMN: "numeric"}),
        }
    (folder / REFERENCE_FILE).write_text(json.dumps(_rounded(profiles)) + "\n")
    return profiles


def _rounded(value: Any) -> Any:
    """Floats to 12 significant digits: DuckDB's parallel sums may differ in the last bits between runs, and
    the same training set must give the same artifact bytes (its DVC version)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def load_reference_profiles(folder: Path) -> dict[str, Any]:
    path = folder / REFERENCE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the model was trained before reference profiles were saved")
    return json.loads(path.read_text())


def feature_drift(
    con: duckdb.DuckDBPyConnection, profiles: dict[str, Any], period_rows_sql: str, drift_share: float
) -> drift.DriftReport:
    return drift.compare(profiles["features"], con, period_rows_sql, drift_share=drift_share)


def prediction_drift(
    con: duckdb.DuckDBPyConnection, profiles: dict[str, Any], period_scores_sql: str
) -> drift.ColumnDrift:
    return drift.compare(profiles["predictions"], con, period_scores_sql).columns[0]


def risk_by_feature(
    report: drift.DriftReport, importance: dict[str, float], major_psi: float = MAJOR_PSI
) -> dict[str, float]:
    """Each feature's share of :func:`auc_at_risk`: its permutation importance (the ROC AUC the champion loses when
    the feature carries no information) times the share of a major shift its PSI reaches. Columns without a PSI
    (missing, constant, empty) count 0 here: drift monitoring reports them on their own."""
    shares = {column.column: min(1.0, column.psi / major_psi) for column in report.columns if column.psi is not None}
    return {feature: weight * shares.get(feature, 0.0) for feature, weight in importance.items()}


def auc_at_risk(report: drift.DriftReport, importance: dict[str, float], major_psi: float = MAJOR_PSI) -> float:
    """An estimate, in ROC AUC points, of what the period's drift costs the champion: a heavy shift in a feature
    the model ignores adds nothing; a major shift in the one it relies on adds all that feature is worth."""
    return float(sum(risk_by_feature(report, importance, major_psi).values()))


@dataclass(frozen=True)
class Performance:
    metrics: dict[str, float]  # the champion on the period
    holdout_roc_auc: float  # the champion on its own held-out period, when it was evaluated
    max_auc_drop: float

    @property
    def auc_drop(self) -> float:
        return self.holdout_roc_auc - self.metrics["roc_auc"]

    @property
    def degraded(self) -> bool:
        return self.auc_drop > self.max_auc_drop


def performance(
    labels: np.ndarray, scores: np.ndarray, holdout_roc_auc: float, max_auc_drop: float
) -> Performance | None:
    """The champion's metrics on a period's labelled rows; None while the period has no labels of both kinds."""
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    return Performance(summary(labels, scores), holdout_roc_auc, max_auc_drop)


@dataclass(frozen=True)
class PeriodSignals:
    """What monitoring recorded for one period, as the retrain sensor reads it from metadata."""

    period: str
    champion_version: str
    champion_target_period: str  # the period the champion was held out on: it has seen everything before
    dataset_drift: bool = False
    drifted_share: float = 0.0
    drifted_features: tuple[str, ...] = ()
    auc_drop: float | None = None
    degraded: bool = False
    auc_at_risk: float | None = None  # None: the champion was trained before importance was measured


def retrain_reason(signals: PeriodSignals, periods: Periods, settings: MonitoringSection | None = None) -> str | None:
    """Why this period calls for a retrain under ``settings.retrain_policy``, or None (always None up to the
    champion's own held-out period: a retrain there could only learn what the champion already learnt)."""
    settings = settings or MonitoringSection()
    if periods.index(signals.period) <= periods.index(signals.champion_target_period):
        return None
    if settings.retrain_policy == "risk":
        return _risk_reason(signals, settings.retrain_cost)
    reasons = []
    if signals.dataset_drift:
        reasons.append(
            f"dataset drift ({signals.drifted_share:.0%} of features: {', '.join(signals.drifted_features)})"
        )
    if signals.degraded and signals.auc_drop is not None:
        reasons.append(f"ROC AUC {signals.auc_drop:.3f} below the champion's held-out AUC")
    return "; ".join(reasons) or None


def _risk_reason(signals: PeriodSignals, cost: float) -> str | None:
    """The expected gain of a retrain, the larger of the AUC the drift puts at risk and the AUC already lost,
    against its cost."""
    reasons = []
    if signals.auc_at_risk is not None and signals.auc_at_risk > cost:
        reasons.append(f"drift puts {signals.auc_at_risk:.3f} ROC AUC at risk (cost {cost:.3f})")
    if signals.auc_drop is not None and signals.auc_drop > cost:
        reasons.append(f"ROC AUC {signals.auc_drop:.3f} below the champion's held-out AUC (cost {cost:.3f})")
    return "; ".join(reasons) or None


def in_cooldown(periods: Periods, period: str, last_retrain: str | None, cooldown_periods: int) -> bool:
    """Whether ``period`` falls within ``cooldown_periods`` of the last retrain (one drift episode, one retrain)."""
    if last_retrain is None:
        return False
    return periods.index(period) - periods.index(last_retrain) < cooldown_periods
