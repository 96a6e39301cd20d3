"""Serving: ``champion_model`` (the registry's champion) and ``flight_delay_predictions`` (monthly batch scores)."""

from typing import Any

import dagster as dg
import duckdb
import polars as pl

from mlplatform import registry
from mlplatform.assets.common import (
    DUCKDB_POOL,
    FOLLOW_NEW_MONTHS,
    MONTHLY,
    OWNERS,
    current_champion,
    recorded_md5s,
    run_logger,
    table_metadata,
    versioned,
)
from mlplatform.markdown import markdown_table
from mlplatform.metrics import paired_bootstrap_auc, roc_auc
from mlplatform.model import ARTIFACT_NAME, LABEL, artifact_folder, load_model
from mlplatform.resources.dvc import DVCResource
from mlplatform.resources.warehouse import Warehouse
from mlplatform.scoring import (
    CHALLENGER_SCORE,
    CHAMPION_SCORE,
    PREDICTIONS_TABLE,
    month_features,
    replace_predictions,
    score_month,
)
from mlplatform.versioning import read_md5

# Why a training run ran, set by whoever launched it: a person (manual, the default), a scheduler (scheduled:
# the replay's monthly policy, or any schedule a team adds) or the drift sensor (drift). The promotion records it.
TRIGGER_TAG = "mlplatform/trigger"


@dg.asset(group_name="serving", kinds={"duckdb"}, owners=OWNERS, pool=DUCKDB_POOL, deps=["model_evaluation"])
def champion_model(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
    """The model that scores flights, as the model registry (DuckDB tables ``model_versions`` and
    ``model_promotions``) records it. Materializing it promotes the version ``model_evaluation`` just
    registered; its blocking ``promotion_gate`` check stops this step for a model that failed. The reason
    comes from the run's ``mlplatform/trigger`` tag (manual, scheduled or drift). ``mlplatform promote`` and
    ``mlplatform rollback`` change the champion outside a run and record the change here too."""
    version = read_md5(dvc.repo().versions_dir / f"{ARTIFACT_NAME}.dvc")
    reason = context.run.tags.get(TRIGGER_TAG, "manual")
    with duckdb.get_connection() as con, run_logger(context) as log:
        try:
            promotion = registry.promote(con, version, reason, note=f"run {context.run.run_id}")
        except registry.RegistryError as error:
            raise dg.Failure(str(error)) from error
        log.info("champion promoted", version=promotion.version, reason=promotion.reason)
        return dg.MaterializeResult(data_version=dg.DataVersion(promotion.version), metadata=champion_metadata(con))


def champion_metadata(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The champion, when and why it was promoted, and the registry's versions and promotions as tables."""
    champion = registry.champion(con)
    if champion is None:
        return {"champion_version": "none"}
    model = registry.get_version(con, champion.version)
    versions = pl.DataFrame(
        [
            {
                "version": v.version,
                "champion": "yes" if v.version == champion.version else "",
                "target_month": v.target_month,
                "window": v.window,
                "roc_auc": round(v.metrics["roc_auc"], 4),
                "gate": "passed" if v.gate_passed else f"failed: {v.gate_reason}",
            }
            for v in registry.versions(con)
        ]
    )
    promotions = pl.DataFrame(registry.promotion_history(con)).with_columns(pl.selectors.temporal().cast(pl.String))
    return {
        "champion_version": champion.version,
        "promoted_at": champion.promoted_at.isoformat(),
        "promotion_reason": champion.reason,
        "previous_version": champion.previous_version or "none",
        "roc_auc": model.metrics["roc_auc"] if model else float("nan"),
        "target_month": model.target_month if model else "unknown",
        "registry": dg.MetadataValue.md(markdown_table(versions)),
        "promotions": dg.MetadataValue.md(markdown_table(promotions)),
    }


@dg.asset(
    group_name="serving",
    kinds={"pytorch", "duckdb"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    partitions_def=MONTHLY,
    deps=["flight_features", "champion_model"],
    automation_condition=FOLLOW_NEW_MONTHS,
)
def flight_delay_predictions(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
    """Every flight of the month scored by the champion, each row carrying the model version that scored it.
    When the registry holds a newer version than the champion (a challenger), its scores are kept beside
    the champion's, and on a month with labels both are compared with a paired bootstrap interval on ROC
    AUC (an offline A/B test). Versioned with DVC; each new month of features is scored automatically."""
    month, repo = context.partition_key, dvc.repo()
    with duckdb.get_connection() as con, run_logger(context) as log:
        champion, challenger = current_champion(con), registry.challenger(con)
        scorers = [(v, load_model(artifact_folder(repo, v))) for v in _versions(champion, challenger)]
        predictions = score_month(month_features(con, month), *scorers)
        rows = replace_predictions(con, month, predictions)
        version, data_version = versioned(con, dvc, PREDICTIONS_TABLE, month)
        comparison = _shadow_comparison(predictions)
        log.info("month scored", rows=rows, champion=champion.version, **comparison)
        return dg.MaterializeResult(
            data_version=data_version,
            metadata={
                **table_metadata(con, PREDICTIONS_TABLE, month),
                **version,
                "model_version": champion.version,
                "challenger_version": challenger.version if challenger else "none",
                "mean_delay_probability": float(predictions[CHAMPION_SCORE].mean()),
                **{f"shadow/{name}": value for name, value in comparison.items()},
                "dvc/inputs": dg.MetadataValue.json(
                    {**recorded_md5s(context.instance, "flight_features", [month]), "champion_model": champion.version}
                ),
            },
        )


def _versions(champion: registry.Promotion, challenger: registry.ModelVersion | None) -> list[str]:
    return [champion.version, *([challenger.version] if challenger else [])]


def _shadow_comparison(predictions: pl.DataFrame) -> dict[str, float]:
    """The champion's AUC on the month's labelled flights and, with a challenger, the paired comparison."""
    labelled = predictions.filter(pl.col(LABEL).is_not_null())
    labels = labelled[LABEL].cast(pl.Int8).to_numpy()
    if labelled.is_empty() or labels.min() == labels.max():
        return {}
    champion_scores = labelled[CHAMPION_SCORE].to_numpy()
    if labelled[CHALLENGER_SCORE].null_count() == labelled.height:
        return {"champion_roc_auc": roc_auc(labels, champion_scores)}
    return paired_bootstrap_auc(labels, champion_scores, labelled[CHALLENGER_SCORE].to_numpy())
