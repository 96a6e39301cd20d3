"""Monitoring: ``feature_drift``, ``prediction_drift`` and ``model_performance``, each month against the
champion's reference profiles and held-out metrics. They follow new data by declarative automation; the
retrain sensor reads their metadata."""

import dagster as dg
import polars as pl
from pydantic import Field

from mlplatform import monitoring, registry
from mlplatform.assets.common import DUCKDB_POOL, FOLLOW_NEW_MONTHS, MONTHLY, OWNERS, current_champion, run_logger
from mlplatform.features import FEATURES_TABLE
from mlplatform.markdown import markdown_table
from mlplatform.model import LABEL, artifact_folder
from mlplatform.params import param
from mlplatform.plots import bar_chart
from mlplatform.resources.dvc import DVCResource
from mlplatform.resources.warehouse import Warehouse
from mlplatform.scoring import CHAMPION_SCORE, PREDICTIONS_TABLE
from mlplatform.sql import sql_string
from mlplatform.warehouse import PARTITION_COLUMN

NO_DATASET_DRIFT = "no_dataset_drift"
WITHIN_AUC_TOLERANCE = "within_auc_tolerance"


def _monitoring_asset(deps: list[str], *checks: dg.AssetCheckSpec):
    """What every monitoring asset shares: monthly, a warehouse reader in the duckdb pool, following new months."""
    return dg.asset(
        group_name="monitoring",
        kinds={"duckdb"},
        owners=OWNERS,
        pool=DUCKDB_POOL,
        partitions_def=MONTHLY,
        deps=deps,
        automation_condition=FOLLOW_NEW_MONTHS,
        check_specs=list(checks) or None,
    )


class DriftConfig(dg.Config):
    drift_share: float = Field(
        default=param("monitoring", "drift_share"),
        gt=0,
        le=1,
        description="Share of drifted features from which the whole month counts as drifted.",
    )


class PerformanceConfig(dg.Config):
    max_auc_drop: float = Field(
        default=param("monitoring", "max_auc_drop"),
        ge=0,
        le=1,
        description="How far the month's ROC AUC may fall below the champion's held-out AUC.",
    )


@_monitoring_asset(
    ["flight_features", "champion_model"],
    dg.AssetCheckSpec(NO_DATASET_DRIFT, asset="feature_drift", description="Fewer features drifted than the share."),
)
def feature_drift(context: dg.AssetExecutionContext, config: DriftConfig, duckdb: Warehouse, dvc: DVCResource):
    """The month's features against the champion's training profile, with Evidently 0.7's default tests
    (Wasserstein or Jensen-Shannon on large references, KS or chi-square on small ones) and PSI beside
    them. The month drifts when the share of drifted features reaches ``drift_share``."""
    month = context.partition_key
    with duckdb.get_connection() as con, run_logger(context) as log:
        champion, profiles = _champion_and_profiles(con, dvc)
        rows = f"SELECT * FROM {FEATURES_TABLE} WHERE {PARTITION_COLUMN} = {sql_string(month)}"
        report = monitoring.feature_drift(con, profiles, rows, config.drift_share)
        target_month = registry.get_version(con, champion.version).target_month
        log.info("feature drift", dataset_drift=report.dataset_drift, drifted=report.drifted_columns)
    table = pl.DataFrame(report.to_rows()).select(
        "column", "test", "statistic", "threshold", "drifted", "psi", "status", "current_null_share"
    )
    tested = [column for column in report.columns if column.statistic is not None]
    yield dg.MaterializeResult(
        metadata={
            "dataset_drift": report.dataset_drift,
            "drifted_share": report.drifted_share,
            "drifted_features": dg.MetadataValue.json(report.drifted_columns),
            "champion_version": champion.version,
            "champion_target_month": target_month,
            "features": dg.MetadataValue.md(markdown_table(table.with_columns(pl.selectors.float().round(4)))),
            "drift_chart": dg.MetadataValue.md(
                bar_chart(
                    [f"{c.column} ({c.test})" for c in tested],
                    [c.statistic for c in tested],
                    "Drift score by feature (red: drifted)",
                    "statistic (distance, or p-value for small references)",
                    highlighted=[c.drifted for c in tested],
                )
            ),
        }
    )
    yield dg.AssetCheckResult(
        check_name=NO_DATASET_DRIFT,
        passed=not report.dataset_drift,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{report.drifted_share:.0%} of features drifted (dataset drift from {config.drift_share:.0%})",
        metadata={"drifted_features": dg.MetadataValue.json(report.drifted_columns)},
    )


@_monitoring_asset(["flight_delay_predictions"])
def prediction_drift(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
    """The distribution of the champion's delay probabilities this month against its scores on its own
    held-out month: a shift here shows before labels arrive."""
    month = context.partition_key
    with duckdb.get_connection() as con, run_logger(context) as log:
        champion, profiles = _champion_and_profiles(con, dvc)
        scores = _champion_predictions(con, month, champion.version, CHAMPION_SCORE)
        result = monitoring.prediction_drift(con, profiles, scores)
        mean = con.execute(f"SELECT avg({CHAMPION_SCORE}) FROM ({scores})").fetchall()[0][0]
        log.info("prediction drift", drifted=result.drifted, statistic=result.statistic)
    return dg.MaterializeResult(
        metadata={
            "drifted": result.drifted,
            "test": result.test or result.status,
            "statistic": result.statistic if result.statistic is not None else float("nan"),
            "psi": result.psi if result.psi is not None else float("nan"),
            "mean_delay_probability": mean,
            "champion_version": champion.version,
        }
    )


@_monitoring_asset(
    ["flight_delay_predictions"],
    dg.AssetCheckSpec(
        WITHIN_AUC_TOLERANCE,
        asset="model_performance",
        description="The champion's ROC AUC on the month is within the tolerance of its held-out AUC.",
    ),
)
def model_performance(context: dg.AssetExecutionContext, config: PerformanceConfig, duckdb: Warehouse):
    """The champion's ROC AUC, PR AUC, log loss, Brier score and calibration error on the month once its
    labels are in, against the AUC it had on its own held-out month."""
    month = context.partition_key
    with duckdb.get_connection() as con, run_logger(context) as log:
        champion = current_champion(con)
        evaluated = registry.get_version(con, champion.version)
        query = _champion_predictions(con, month, champion.version, f"{LABEL}, {CHAMPION_SCORE}")
        labelled = pl.from_arrow(con.sql(f"SELECT * FROM ({query}) WHERE {LABEL} IS NOT NULL").to_arrow_table())
    holdout_auc = evaluated.metrics["roc_auc"]
    result = monitoring.performance(
        labelled[LABEL].cast(pl.Int8).to_numpy(), labelled[CHAMPION_SCORE].to_numpy(), holdout_auc, config.max_auc_drop
    )
    if result is None:
        yield dg.MaterializeResult(
            metadata={
                "labels": "not yet",
                "champion_version": champion.version,
                "champion_target_month": evaluated.target_month,
            }
        )
        yield dg.AssetCheckResult(check_name=WITHIN_AUC_TOLERANCE, passed=True, description="no labels yet")
        return
    log.info("model performance", **result.metrics, auc_drop=result.auc_drop)
    yield dg.MaterializeResult(
        metadata={
            **result.metrics,
            "holdout_roc_auc": holdout_auc,
            "auc_drop": result.auc_drop,
            "degraded": result.degraded,
            "labelled_flights": labelled.height,
            "champion_version": champion.version,
            "champion_target_month": evaluated.target_month,
        }
    )
    yield dg.AssetCheckResult(
        check_name=WITHIN_AUC_TOLERANCE,
        passed=not result.degraded,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"ROC AUC {result.metrics['roc_auc']:.4f} against held-out {holdout_auc:.4f} "
        f"(tolerance {config.max_auc_drop:.3f})",
    )


def _champion_and_profiles(con, dvc: DVCResource) -> tuple[registry.Promotion, dict]:
    """The champion and the reference profiles saved with its artifact (restored through DVC if needed)."""
    champion = current_champion(con)
    return champion, monitoring.load_reference_profiles(artifact_folder(dvc.repo(), champion.version))


def _champion_predictions(con, month: str, version: str, columns: str) -> str:
    """The query for the month's predictions by ``version``; an error saying what to do when there are none."""
    where = f"{PARTITION_COLUMN} = {sql_string(month)} AND model_version = {sql_string(version)}"
    if not con.execute(f"SELECT count(*) FROM {PREDICTIONS_TABLE} WHERE {where}").fetchall()[0][0]:
        raise dg.Failure(
            f"{month} has no predictions by the champion {version}: materialize flight_delay_predictions [{month}]"
        )
    return f"SELECT {columns} FROM {PREDICTIONS_TABLE} WHERE {where}"
