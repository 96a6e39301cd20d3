"""Evaluation: ``model_evaluation``, the trained model on its held-out month against a baseline."""

import dagster as dg
import polars as pl
from pydantic import Field

from mlplatform.assets.common import DVC_POOL, OWNERS, run_logger
from mlplatform.assets.training import MODEL_ARTIFACT
from mlplatform.evaluation import baseline_scores, by_group, calibration, model_card, summary
from mlplatform.markdown import markdown_table
from mlplatform.model import LABEL, load_model
from mlplatform.params import param
from mlplatform.resources.dvc import DVCResource
from mlplatform.training_set import HOLDOUT, SPLIT_COLUMN, TRAINING_SET_TABLE
from mlplatform.versioning import read_md5

BEATS_BASELINE = "beats_baseline"


class EvaluationConfig(dg.Config):
    min_roc_auc: float = Field(
        default=param("evaluation", "min_roc_auc"), ge=0, le=1, description="The least held-out ROC AUC that passes."
    )


@dg.asset(
    group_name="training",
    kinds={"pytorch"},
    owners=OWNERS,
    pool=DVC_POOL,
    deps=["delay_model", "training_set"],
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_BASELINE,
            asset="model_evaluation",
            blocking=True,
            description="Held-out ROC AUC at least the configured minimum and above the route-rate baseline.",
        )
    ],
)
def model_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, dvc: DVCResource):
    """The trained model scored on its held-out month: ROC AUC, PR AUC, log loss, Brier score and
    calibration error, per carrier and per origin, beside a baseline (each flight's historical route delay
    rate), with a model card. Its check stops a model that does not earn its place."""
    repo = dvc.repo()
    source = repo.version_path(TRAINING_SET_TABLE, None)
    holdout = pl.read_parquet(source).filter((pl.col(SPLIT_COLUMN) == HOLDOUT) & pl.col(LABEL).is_not_null())
    model = load_model(repo.versions_dir / MODEL_ARTIFACT)
    labels = holdout[LABEL].cast(pl.Int8).to_numpy()
    scores = model.predict(holdout)
    metrics = {
        "model": summary(labels, scores),
        "baseline (route delay rate)": summary(labels, baseline_scores(holdout)),
    }
    groups = {column: by_group(holdout, labels, scores, column) for column in ("carrier", "origin")}
    model_version = read_md5(repo.versions_dir / f"{MODEL_ARTIFACT}.dvc")  # the artifact as DVC recorded it
    target = model.manifest["target_month"]
    card = model_card(model_version, target, metrics, groups, model.manifest)
    calibration_table = calibration(labels, scores).with_columns(pl.selectors.float().round(4))
    ours, baseline = metrics["model"]["roc_auc"], metrics["baseline (route delay rate)"]["roc_auc"]
    with run_logger(context) as log:
        log.info("model evaluated", roc_auc=ours, baseline_roc_auc=baseline, target_month=target)
    yield dg.MaterializeResult(
        metadata={
            **metrics["model"],
            "baseline_roc_auc": baseline,
            "lift_over_baseline": ours - baseline,
            "target_month": target,
            "holdout_rows": holdout.height,
            "model_card": dg.MetadataValue.md(card),
            "model_version": model_version,
            "calibration": dg.MetadataValue.md(markdown_table(calibration_table)),
        }
    )
    passed = ours >= config.min_roc_auc and ours > baseline
    yield dg.AssetCheckResult(
        check_name=BEATS_BASELINE,
        passed=passed,
        description=f"ROC AUC {ours:.4f} against minimum {config.min_roc_auc:.2f} and baseline {baseline:.4f}",
        metadata={"roc_auc": ours, "baseline_roc_auc": baseline, "min_roc_auc": config.min_roc_auc},
    )
