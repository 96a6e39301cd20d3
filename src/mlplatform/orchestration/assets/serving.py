"""Serving: a dataset's ``champion_model`` (the registry's champion) and ``predictions`` (batch scores per period)."""

from typing import Any

import dagster as dg
import duckdb
import polars as pl

from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, PREDICTIONS_TABLE
from mlplatform.markdown import markdown_table
from mlplatform.ml import registry
from mlplatform.ml.artifact import artifact_folder
from mlplatform.ml.metrics import paired_bootstrap_auc, roc_auc
from mlplatform.ml.scoring import (
    CHALLENGER_SCORE,
    CHAMPION_SCORE,
    SERVED_SCORE,
    Canary,
    period_features,
    replace_predictions,
    score_period,
)
from mlplatform.orchestration.assets.common import (
    DUCKDB_POOL,
    ONE_RUN_PER_RANGE,
    asset_key,
    common,
    current_champion,
    follow_new_periods,
    partitions,
    recorded_md5s,
    run_logger,
    run_periods,
    table_metadata,
    versioned,
)
from mlplatform.orchestration.assets.evaluation import EVALUATION, trained_version
from mlplatform.orchestration.config import run_config, section_schema, with_overrides
from mlplatform.orchestration.resources.dvc import DVCResource
from mlplatform.orchestration.resources.warehouse import Warehouse

CHAMPION = "champion_model"
# Why a training run ran, set by whoever launched it: a person (manual, the default), a scheduler (scheduled:
# the replay's periodic policy, or any schedule a team adds), the drift sensor (drift) or, for a dataset with no
# champion yet, the first training sensor (first_training). The promotion records it.
TRIGGER_TAG = "mlplatform/trigger"


def serving_assets(dataset: Dataset) -> list[dg.AssetsDefinition]:
    return [champion_asset(dataset), predictions_asset(dataset)]


def champion_asset(dataset: Dataset) -> dg.AssetsDefinition:
    model_name = dataset.model.name
    declared = dataset.declaration.rollout

    @dg.asset(
        key=asset_key(dataset, CHAMPION),
        kinds={"duckdb"},
        pool=DUCKDB_POOL,
        deps=[asset_key(dataset, EVALUATION)],
        config_schema=section_schema(declared, ["steps"]),
        description=f"The {model_name} version that scores, as the model registry (DuckDB tables model_versions, "
        "model_promotions and model_rollouts) records it. Materializing it brings in the version model_evaluation "
        "registered in this run; its blocking promotion_gate check stops this step for a model that failed. The "
        "first model is promoted whole; a later one starts a rollout: it serves the first of rollout.steps of each "
        "period's rows (a canary picked by the md5 of the natural key) and the rollout asset steps it up or rolls "
        "it back on its realised ROC AUC (steps [1.0] promotes it whole). The reason comes from the run's "
        "mlplatform/trigger tag (manual, scheduled, drift or first_training). `mlplatform promote`, `rollback` and "
        "`rollout --abort` change the champion or the rollout outside a run and record the change here too.",
        **common(dataset, "serving"),
    )
    def champion_model(context: dg.AssetExecutionContext, duckdb: Warehouse):
        version = trained_version(context, asset_key(dataset, EVALUATION))
        reason = context.run.tags.get(TRIGGER_TAG, "manual")
        steps = with_overrides(declared, run_config(context)).steps
        note = f"run {context.run.run_id}"
        with duckdb.get_connection() as con, run_logger(context) as log:
            current = registry.champion(con, model_name)
            try:
                if current is None or current.version == version or len(steps) == 1:
                    promotion = registry.promote(con, model_name, version, reason, note=note)
                    log.info("champion promoted", version=promotion.version, reason=promotion.reason)
                else:
                    canary = registry.start_rollout(con, model_name, version, steps, reason, note=note)
                    log.info("rollout started", version=canary.version, share=canary.share, champion=current.version)
            except registry.RegistryError as error:
                raise dg.Failure(str(error)) from error
            metadata = champion_metadata(con, model_name)
            return dg.MaterializeResult(data_version=dg.DataVersion(metadata["champion_version"]), metadata=metadata)

    return champion_model


def champion_metadata(con: duckdb.DuckDBPyConnection, model_name: str) -> dict[str, Any]:
    """The champion, when and why it was promoted, and the registry's versions and promotions as tables."""
    champion = registry.champion(con, model_name)
    if champion is None:
        return {"champion_version": "none"}
    model = registry.get_version(con, model_name, champion.version)
    versions = pl.DataFrame(
        [
            {
                "version": v.version,
                "champion": "yes" if v.version == champion.version else "",
                "target_period": v.target_period,
                "window": v.window,
                "roc_auc": round(v.metrics["roc_auc"], 4),
                "gate": "passed" if v.gate_passed else f"failed: {v.gate_reason}",
            }
            for v in registry.versions(con, model_name)
        ]
    )
    history = registry.promotion_history(con, model_name)
    promotions = pl.DataFrame(history).with_columns(pl.selectors.temporal().cast(pl.String))
    return {
        **rollout_metadata(con, model_name),
        "model_name": model_name,
        "champion_version": champion.version,
        "promoted_at": champion.promoted_at.isoformat(),
        "promotion_reason": champion.reason,
        "previous_version": champion.previous_version or "none",
        "roc_auc": model.metrics["roc_auc"] if model else float("nan"),
        "target_period": model.target_period if model else "unknown",
        "registry": dg.MetadataValue.md(markdown_table(versions)),
        "promotions": dg.MetadataValue.md(markdown_table(promotions)),
    }


def rollout_metadata(con: duckdb.DuckDBPyConnection, model_name: str) -> dict[str, Any]:
    """The rollout serving now (its canary, share and step) and every rollout event, as a table."""
    serving = registry.rollout(con, model_name)
    history = registry.rollout_history(con, model_name)
    state = {"rollout": serving.describe() if serving else "none"}
    if serving:
        state |= {"canary_version": serving.version, "canary_share": serving.share}
    if history:
        events = pl.DataFrame(history).with_columns(
            pl.selectors.temporal().cast(pl.String), pl.selectors.float().round(4)
        )
        state["rollout_events"] = dg.MetadataValue.md(markdown_table(events))
    return state


def predictions_asset(dataset: Dataset) -> dg.AssetsDefinition:
    label, model_name = dataset.label, dataset.model.name
    features_key = asset_key(dataset, FEATURES_TABLE)

    @dg.asset(
        key=asset_key(dataset, PREDICTIONS_TABLE),
        kinds={"pytorch", "duckdb"},
        pool=DUCKDB_POOL,
        partitions_def=partitions(dataset),
        backfill_policy=ONE_RUN_PER_RANGE,
        deps=[features_key, asset_key(dataset, CHAMPION)],
        automation_condition=follow_new_periods(dataset),
        description="Every row of the period served by the champion, or, during a rollout, by the canary when the "
        "md5 of its natural key falls in the canary's share; each row carries the version that served it "
        "(model_version, probability) and the champion's probability (champion_probability, in the canary's "
        "shadow on its rows). When the registry holds a newer version than the champion (a challenger), its scores "
        "are kept beside, and on a period with labels both are compared with a paired bootstrap interval on ROC "
        "AUC (an offline A/B test). Versioned with DVC per period; each new period of features is scored "
        "automatically, and periods waiting together (a backfill, those landed before the first champion) in one run.",
        **common(dataset, "serving"),
    )
    def predictions(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
        from mlplatform.ml.model import load_model  # PyTorch, only in the steps that load a model

        repo, data_versions = dvc.repo(), []
        with duckdb.get_connection() as con, run_logger(context) as log:
            champion = current_champion(con, dataset)
            challenger = registry.challenger(con, model_name)
            serving = registry.rollout(con, model_name)
            canary = Canary(serving.version, serving.share) if serving else None
            named = {champion.version, challenger.version if challenger else None, canary and canary.version}
            models = {v: load_model(artifact_folder(repo, v)) for v in named - {None}}
            for period in run_periods(context):
                scored = score_period(
                    dataset,
                    period_features(con, dataset, period),
                    models,
                    champion.version,
                    challenger.version if challenger else None,
                    canary,
                )
                rows = replace_predictions(con, dataset, period, scored)
                version, data_version = versioned(con, dvc, dataset, PREDICTIONS_TABLE, period)
                data_versions.append(data_version)
                comparison = _shadow_comparison(scored, label)
                canary_rows = scored.filter(pl.col("model_version") != champion.version).height
                log.info("period scored", rows=rows, champion=champion.version, canary_rows=canary_rows, **comparison)
                context.add_asset_metadata(
                    {
                        **table_metadata(con, dataset.table(PREDICTIONS_TABLE), period),
                        **version,
                        "model_version": champion.version,
                        "challenger_version": challenger.version if challenger else "none",
                        "canary_version": canary.version if canary else "none",
                        "canary_share": canary.share if canary else 0.0,
                        "canary_rows": canary_rows,
                        "mean_probability": float(scored[SERVED_SCORE].mean()),
                        **{f"shadow/{name}": value for name, value in comparison.items()},
                        "dvc/inputs": dg.MetadataValue.json(
                            {
                                **recorded_md5s(context.instance, features_key, [period]),
                                CHAMPION: champion.version,
                                **({"canary": canary.version} if canary else {}),
                            }
                        ),
                    },
                    partition_key=period,
                )
        # Dagster keeps one data version per step: a period's own md5 when the run scores one, else each period's
        # md5 is in its dvc/md5 metadata and the range takes the version Dagster derives from its inputs.
        return dg.MaterializeResult(data_version=data_versions[0] if len(data_versions) == 1 else None)

    return predictions


def _shadow_comparison(predictions: pl.DataFrame, label: str) -> dict[str, float]:
    """The champion's AUC on the period's labelled rows and, with a challenger, the paired comparison."""
    labelled = predictions.filter(pl.col(label).is_not_null())
    labels = labelled[label].cast(pl.Int8).to_numpy()
    if labelled.is_empty() or labels.min() == labels.max():
        return {}
    champion_scores = labelled[CHAMPION_SCORE].to_numpy()
    if labelled[CHALLENGER_SCORE].null_count() == labelled.height:
        return {"champion_roc_auc": roc_auc(labels, champion_scores)}
    return paired_bootstrap_auc(labels, champion_scores, labelled[CHALLENGER_SCORE].to_numpy())
