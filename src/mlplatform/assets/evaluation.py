"""Evaluation: ``model_evaluation``, the trained model on its held-out month against a baseline and the
champion, registered in the model registry with the verdict of its promotion gate."""

import dagster as dg
import polars as pl
from pydantic import Field

from mlplatform import registry
from mlplatform.assets.common import DUCKDB_POOL, OWNERS, run_logger
from mlplatform.evaluation import baseline_scores, by_group, calibration, model_card, promotion_gate, summary
from mlplatform.markdown import markdown_table
from mlplatform.metrics import paired_bootstrap_auc
from mlplatform.model import ARTIFACT_NAME, LABEL, artifact_folder, load_model
from mlplatform.params import param
from mlplatform.plots import calibration_chart
from mlplatform.resources.dvc import DVCResource
from mlplatform.resources.warehouse import Warehouse
from mlplatform.training_set import HOLDOUT, SPLIT_COLUMN, TRAINING_SET_TABLE
from mlplatform.versioning import read_md5

PROMOTION_GATE = "promotion_gate"
BASELINE = "baseline (route delay rate)"


class EvaluationConfig(dg.Config):
    min_roc_auc: float = Field(
        default=param("evaluation", "min_roc_auc"), ge=0, le=1, description="The least held-out ROC AUC that passes."
    )
    champion_tolerance: float = Field(
        default=param("evaluation", "champion_tolerance"),
        ge=0,
        le=1,
        description="How far below the champion's ROC AUC on the same rows a challenger may be and still pass.",
    )


@dg.asset(
    group_name="training",
    kinds={"pytorch", "duckdb"},
    owners=OWNERS,
    pool=DUCKDB_POOL,  # writes the registry table
    deps=["delay_model", "training_set"],
    check_specs=[
        dg.AssetCheckSpec(
            PROMOTION_GATE,
            asset="model_evaluation",
            blocking=True,
            description="Held-out ROC AUC at least the configured minimum, above the route-rate baseline, and not "
            "worse than the champion's on the same rows by more than the tolerance. Blocks promotion.",
        )
    ],
)
def model_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, dvc: DVCResource, duckdb: Warehouse):
    """The trained model scored on its held-out month: ROC AUC, PR AUC, log loss, Brier score and
    calibration error, per carrier and per origin, beside a baseline (each flight's historical route delay
    rate) and the current champion on the same rows (with a paired bootstrap interval), with a model card.
    The version and its gate verdict go into the model registry; the blocking check stops a model that
    does not earn its place from being promoted."""
    repo = dvc.repo()
    holdout = pl.read_parquet(repo.version_path(TRAINING_SET_TABLE, None))
    holdout = holdout.filter((pl.col(SPLIT_COLUMN) == HOLDOUT) & pl.col(LABEL).is_not_null())
    model = load_model(repo.versions_dir / ARTIFACT_NAME)
    model_version = read_md5(repo.versions_dir / f"{ARTIFACT_NAME}.dvc")  # the artifact as DVC recorded it
    labels, scores = holdout[LABEL].cast(pl.Int8).to_numpy(), model.predict(holdout)
    target = model.manifest["target_month"]
    metrics = {"model": summary(labels, scores), BASELINE: summary(labels, baseline_scores(holdout))}
    ours, baseline = metrics["model"]["roc_auc"], metrics[BASELINE]["roc_auc"]
    with duckdb.get_connection() as con:
        champion = registry.champion(con)
        comparison = {}
        if champion and champion.version != model_version:
            champion_model = load_model(artifact_folder(repo, champion.version))
            if _saw_month(champion_model.manifest, target):
                comparison = {"champion_skipped": f"champion {champion.version} was trained on {target}"}
            else:
                champion_scores = champion_model.predict(holdout)
                metrics[f"champion {champion.version[:8]}"] = summary(labels, champion_scores)
                comparison = paired_bootstrap_auc(labels, champion_scores, scores)
        passed, reason = promotion_gate(
            ours, baseline, config.min_roc_auc, comparison.get("champion_roc_auc"), config.champion_tolerance
        )
        registry.register(
            con,
            registry.ModelVersion(
                version=model_version,
                target_month=target,
                window=model.manifest["window"],
                training_data_version=model.manifest["training_data_version"],
                metrics={**metrics["model"], "baseline_roc_auc": baseline},
                gate_passed=passed,
                gate_reason=reason,
            ),
        )
    groups = {column: by_group(holdout, labels, scores, column) for column in ("carrier", "origin")}
    card = model_card(model_version, target, metrics, groups, model.manifest)
    bins = calibration(labels, scores)
    with run_logger(context) as log:
        log.info("model evaluated", roc_auc=ours, baseline_roc_auc=baseline, target_month=target, gate=passed)
    yield dg.MaterializeResult(
        metadata={
            **metrics["model"],
            "baseline_roc_auc": baseline,
            "lift_over_baseline": ours - baseline,
            **{f"vs_champion/{name}": value for name, value in comparison.items()},
            "target_month": target,
            "holdout_rows": holdout.height,
            "model_card": dg.MetadataValue.md(card),
            "model_version": model_version,
            "calibration": dg.MetadataValue.md(
                calibration_chart(bins["predicted"], bins["observed"], bins["flights"])
                + "\n\n"
                + markdown_table(bins.with_columns(pl.selectors.float().round(4)))
            ),
        }
    )
    yield dg.AssetCheckResult(
        check_name=PROMOTION_GATE,
        passed=passed,
        description=reason,
        metadata={
            "roc_auc": ours,
            "baseline_roc_auc": baseline,
            "min_roc_auc": config.min_roc_auc,
            "champion_tolerance": config.champion_tolerance,
            **({"champion_roc_auc": comparison["champion_roc_auc"]} if "champion_roc_auc" in comparison else {}),
        },
    )


def _saw_month(manifest: dict, month: str) -> bool:
    """Whether a model's training window covers ``month`` (its window is ``first..last``)."""
    first, last = manifest["window"].split("..")
    return first <= month <= last
