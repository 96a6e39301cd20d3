"""Monitoring: a dataset's ``feature_drift``, ``prediction_drift`` and ``model_performance``, each period against
the champion's reference profiles and held-out metrics. They follow new data by declarative automation; the
retrain sensor reads their metadata."""

import json
from pathlib import Path

import dagster as dg
import polars as pl

from mlplatform.data.sql import identifier, sql_string
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, PREDICTIONS_TABLE
from mlplatform.markdown import markdown_table
from mlplatform.ml import registry
from mlplatform.ml.artifact import MANIFEST_FILE, artifact_folder
from mlplatform.ml.scoring import CHAMPION_SCORE
from mlplatform.monitoring import champion as monitoring
from mlplatform.monitoring.drift import DriftReport
from mlplatform.orchestration.assets.common import (
    DUCKDB_POOL,
    ONE_RUN_PER_RANGE,
    asset_key,
    common,
    current_champion,
    follow_new_periods,
    partitions,
    periods_check,
    run_logger,
    run_periods,
)
from mlplatform.orchestration.assets.serving import CHAMPION
from mlplatform.orchestration.config import run_config, section_schema, with_overrides
from mlplatform.orchestration.resources.dvc import DVCResource
from mlplatform.orchestration.resources.warehouse import Warehouse
from mlplatform.plots import bar_chart

FEATURE_DRIFT, PREDICTION_DRIFT, PERFORMANCE = "feature_drift", "prediction_drift", "model_performance"
NO_DATASET_DRIFT = "no_dataset_drift"
WITHIN_AUC_TOLERANCE = "within_auc_tolerance"


def monitoring_assets(dataset: Dataset) -> list[dg.AssetsDefinition]:
    return [feature_drift_asset(dataset), prediction_drift_asset(dataset), performance_asset(dataset)]


def _monitoring_asset(dataset: Dataset, name: str, deps: list[str], description: str, **kwargs):
    """What every monitoring asset shares: per period (a range of them in one run), a warehouse reader in the duckdb
    pool, following new data."""
    return dg.asset(
        key=asset_key(dataset, name),
        kinds={"duckdb"},
        pool=DUCKDB_POOL,
        partitions_def=partitions(dataset),
        backfill_policy=ONE_RUN_PER_RANGE,
        deps=[asset_key(dataset, dep) for dep in deps],
        automation_condition=follow_new_periods(dataset),
        description=description,
        **common(dataset, "monitoring"),
        **kwargs,
    )


def feature_drift_asset(dataset: Dataset) -> dg.AssetsDefinition:
    key = asset_key(dataset, FEATURE_DRIFT)
    declared = dataset.declaration.monitoring

    @_monitoring_asset(
        dataset,
        FEATURE_DRIFT,
        [FEATURES_TABLE, CHAMPION],
        "The period's features against the champion's training profile, with Evidently 0.7's default tests "
        "(Wasserstein or Jensen-Shannon on large references, KS or chi-square on small ones) and PSI beside them. "
        "The period drifts when the share of drifted features reaches drift_share. auc_at_risk weighs each "
        "feature's PSI by the champion's permutation importance: the ROC AUC the drift may cost it.",
        config_schema=section_schema(declared, ["drift_share"]),
        check_specs=[
            dg.AssetCheckSpec(NO_DATASET_DRIFT, asset=key, description="Fewer features drifted than the share.")
        ],
    )
    def feature_drift(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
        config = with_overrides(declared, run_config(context))
        outcomes, drifted = {}, {}
        with duckdb.get_connection() as con, run_logger(context) as log:
            champion, folder = _champion_artifact(con, dataset, dvc)
            profiles = monitoring.load_reference_profiles(folder)
            target = registry.get_version(con, dataset.model.name, champion.version).target_period
            importance = _feature_importance(folder)
            identity = {"champion_version": champion.version, "champion_target_period": target}
            for period in run_periods(context):
                rows = f"SELECT * FROM {dataset.table(FEATURES_TABLE)} WHERE {PERIOD_COLUMN} = {sql_string(period)}"
                report = monitoring.feature_drift(con, profiles, rows, config.drift_share)
                risk = monitoring.risk_by_feature(report, importance)
                # What the risk policy decides on; absent for a champion trained before importance was measured.
                at_risk = {"auc_at_risk": float(sum(risk.values()))} if importance else {}
                log.info("feature drift", dataset_drift=report.dataset_drift, drifted=report.drifted_columns, **at_risk)
                context.add_asset_metadata(
                    {**_drift_metadata(report, importance, risk), **identity, **at_risk}, partition_key=period
                )
                drifted[period] = report.drifted_columns
                outcomes[period] = (
                    not report.dataset_drift,
                    f"{report.drifted_share:.0%} of features drifted (dataset drift from {config.drift_share:.0%})",
                )
        yield dg.MaterializeResult()
        features = next(iter(drifted.values())) if len(drifted) == 1 else drifted
        yield periods_check(NO_DATASET_DRIFT, outcomes, {"drifted_features": dg.MetadataValue.json(features)})

    return feature_drift


def _drift_metadata(report: DriftReport, importance: dict[str, float], risk: dict[str, float]) -> dict[str, object]:
    """A period's feature drift as metadata: the verdict, each feature's test, PSI and share of the AUC at risk as
    a table, and the drift scores as a chart."""
    table = pl.DataFrame(report.to_rows()).select(
        "column", "test", "statistic", "threshold", "drifted", "psi", "status", "current_null_share"
    )
    if importance:
        table = table.with_columns(
            importance=pl.col("column").replace_strict(importance, default=None, return_dtype=pl.Float64),
            auc_at_risk=pl.col("column").replace_strict(risk, default=None, return_dtype=pl.Float64),
        )
    tested = [column for column in report.columns if column.statistic is not None]
    return {
        "dataset_drift": report.dataset_drift,
        "drifted_share": report.drifted_share,
        "drifted_features": dg.MetadataValue.json(report.drifted_columns),
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


def prediction_drift_asset(dataset: Dataset) -> dg.AssetsDefinition:
    @_monitoring_asset(
        dataset,
        PREDICTION_DRIFT,
        [PREDICTIONS_TABLE],
        "The distribution of the champion's probabilities this period against its scores on its own held-out "
        "period: a shift here shows before labels arrive.",
    )
    def prediction_drift(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
        with duckdb.get_connection() as con, run_logger(context) as log:
            champion, folder = _champion_artifact(con, dataset, dvc)
            profiles = monitoring.load_reference_profiles(folder)
            for period in run_periods(context):
                # Named as the profile names the champion's held-out scores.
                column = f"{CHAMPION_SCORE} AS {monitoring.SCORE_COLUMN}"
                scores = _champion_predictions(con, dataset, period, champion.version, column)
                result = monitoring.prediction_drift(con, profiles, scores)
                mean = con.execute(f"SELECT avg({monitoring.SCORE_COLUMN}) FROM ({scores})").fetchall()[0][0]
                log.info("prediction drift", drifted=result.drifted, statistic=result.statistic)
                context.add_asset_metadata(
                    {
                        "drifted": result.drifted,
                        "test": result.test or result.status,
                        "statistic": result.statistic if result.statistic is not None else float("nan"),
                        "psi": result.psi if result.psi is not None else float("nan"),
                        "mean_probability": mean,
                        "champion_version": champion.version,
                    },
                    partition_key=period,
                )
        return dg.MaterializeResult()

    return prediction_drift


def performance_asset(dataset: Dataset) -> dg.AssetsDefinition:
    key = asset_key(dataset, PERFORMANCE)
    declared = dataset.declaration.monitoring
    label = dataset.label

    @_monitoring_asset(
        dataset,
        PERFORMANCE,
        [PREDICTIONS_TABLE],
        "The champion's ROC AUC, PR AUC, log loss, Brier score and calibration error on the period once its "
        "labels are in, against the AUC it had on its own held-out period.",
        config_schema=section_schema(declared, ["max_auc_drop"]),
        check_specs=[
            dg.AssetCheckSpec(
                WITHIN_AUC_TOLERANCE,
                asset=key,
                description="The champion's ROC AUC on the period is within the tolerance of its held-out AUC.",
            )
        ],
    )
    def model_performance(context: dg.AssetExecutionContext, duckdb: Warehouse):
        config = with_overrides(declared, run_config(context))
        outcomes = {}
        with duckdb.get_connection() as con, run_logger(context) as log:
            champion = current_champion(con, dataset)
            evaluated = registry.get_version(con, dataset.model.name, champion.version)
            holdout_auc = evaluated.metrics["roc_auc"]
            identity = {"champion_version": champion.version, "champion_target_period": evaluated.target_period}
            for period in run_periods(context):
                columns = f"{identifier(label)}, {CHAMPION_SCORE}"
                query = _champion_predictions(con, dataset, period, champion.version, columns)
                labelled = pl.from_arrow(
                    con.sql(f"SELECT * FROM ({query}) WHERE {identifier(label)} IS NOT NULL").to_arrow_table()
                )
                result = monitoring.performance(
                    labelled[label].cast(pl.Int8).to_numpy(),
                    labelled[CHAMPION_SCORE].to_numpy(),
                    holdout_auc,
                    config.max_auc_drop,
                )
                if result is None:
                    context.add_asset_metadata({"labels": "not yet", **identity}, partition_key=period)
                    outcomes[period] = (True, "no labels yet")
                    continue
                log.info("model performance", **result.metrics, auc_drop=result.auc_drop)
                metadata = {
                    **result.metrics,
                    "holdout_roc_auc": holdout_auc,
                    "auc_drop": result.auc_drop,
                    "degraded": result.degraded,
                    "labelled_rows": labelled.height,
                }
                context.add_asset_metadata({**metadata, **identity}, partition_key=period)
                outcomes[period] = (
                    not result.degraded,
                    f"ROC AUC {result.metrics['roc_auc']:.4f} against held-out {holdout_auc:.4f} "
                    f"(tolerance {config.max_auc_drop:.3f})",
                )
        yield dg.MaterializeResult()
        yield periods_check(WITHIN_AUC_TOLERANCE, outcomes)

    return model_performance


def _champion_artifact(con, dataset: Dataset, dvc: DVCResource) -> tuple[registry.Promotion, Path]:
    """The champion and its artifact folder (restored through DVC if needed), which holds its reference profiles
    and its manifest."""
    champion = current_champion(con, dataset)
    return champion, artifact_folder(dvc.repo(), champion.version)


def _feature_importance(folder: Path) -> dict[str, float]:
    """The permutation importance measured when the model was trained; empty for an older artifact."""
    return json.loads((folder / MANIFEST_FILE).read_text()).get("feature_importance", {})


def _champion_predictions(con, dataset: Dataset, period: str, version: str, columns: str) -> str:
    """The query for the period's predictions by the champion ``version`` (on every row, the canary's included);
    an error saying what to do when there are none."""
    table = dataset.table(PREDICTIONS_TABLE)
    where = f"{PERIOD_COLUMN} = {sql_string(period)} AND champion_version = {sql_string(version)}"
    if not con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchall()[0][0]:
        raise dg.Failure(
            f"{period} has no predictions by the champion {version}: materialize "
            f"{dataset.name}/{PREDICTIONS_TABLE} [{period}]"
        )
    return f"SELECT {columns} FROM {table} WHERE {where}"
