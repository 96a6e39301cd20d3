"""Evaluation: ``model_evaluation``, the model a run trained on its held-out period against a baseline and the
champion, registered in the model registry with the verdict of its promotion gate."""

import dagster as dg
import polars as pl

from mlplatform.catalog import latest_metadata
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import TRAINING_SET_TABLE
from mlplatform.markdown import markdown_table
from mlplatform.ml import registry
from mlplatform.ml.artifact import artifact_folder
from mlplatform.ml.evaluation import baseline_scores, by_group, calibration, model_card, promotion_gate, summary
from mlplatform.ml.metrics import paired_bootstrap_auc
from mlplatform.ml.training_set import HOLDOUT, SPLIT_COLUMN
from mlplatform.orchestration.assets.common import DUCKDB_POOL, asset_key, common, run_logger
from mlplatform.orchestration.assets.training import MODEL, training_set_path
from mlplatform.orchestration.config import run_config, section_schema, with_overrides
from mlplatform.orchestration.resources.dvc import DVCResource
from mlplatform.orchestration.resources.warehouse import Warehouse
from mlplatform.plots import calibration_chart

EVALUATION = "model_evaluation"
PROMOTION_GATE = "promotion_gate"
BASELINE = "baseline"


def trained_version(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str:
    """The model version (DVC md5) this run's upstream step recorded in its materialization: the version
    flows through Dagster's event log, not through a file two runs could share."""
    metadata = latest_metadata(context.instance, key, run_id=context.run.run_id) or latest_metadata(
        context.instance, key
    )
    if metadata is None:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized: run the training job")
    return metadata["dvc/md5"] if "dvc/md5" in metadata else metadata["model_version"]


def evaluation_asset(dataset: Dataset) -> dg.AssetsDefinition:
    key = asset_key(dataset, EVALUATION)
    declared = dataset.declaration.evaluation
    label, model_name = dataset.label, dataset.model.name

    @dg.asset(
        key=key,
        kinds={"pytorch", "duckdb"},
        pool=DUCKDB_POOL,  # writes the registry table
        deps=[asset_key(dataset, MODEL), asset_key(dataset, TRAINING_SET_TABLE)],
        config_schema=section_schema(declared, ["min_roc_auc", "champion_tolerance"]),
        check_specs=[
            dg.AssetCheckSpec(
                PROMOTION_GATE,
                asset=key,
                blocking=True,
                description="Held-out ROC AUC at least the configured minimum, above the baseline, and not worse "
                "than the champion's on the same rows by more than the tolerance. Blocks promotion.",
            )
        ],
        description="The trained model scored on its held-out period: ROC AUC, PR AUC, log loss, Brier score and "
        f"calibration error, per {', '.join(declared.group_by) or 'nothing'}, beside a baseline "
        f"({', '.join(declared.baseline)}) and the current champion on the same rows (with a paired bootstrap "
        "interval), with a model card. The version and its gate verdict go into the model registry; the "
        "blocking check stops a model that does not earn its place from being promoted.",
        **common(dataset, "training"),
    )
    def model_evaluation(context: dg.AssetExecutionContext, dvc: DVCResource, duckdb: Warehouse):
        from mlplatform.ml.model import load_model  # PyTorch, only in the steps that load a model

        config = with_overrides(declared, run_config(context))
        repo = dvc.repo()
        holdout = pl.read_parquet(training_set_path(dvc, dataset))
        holdout = holdout.filter((pl.col(SPLIT_COLUMN) == HOLDOUT) & pl.col(label).is_not_null())
        model_version = trained_version(context, asset_key(dataset, MODEL))
        model = load_model(artifact_folder(repo, model_version))
        labels, scores = holdout[label].cast(pl.Int8).to_numpy(), model.predict(holdout)
        target = model.manifest["target_period"]
        baseline_rows = baseline_scores(holdout, declared.baseline)
        metrics = {"model": summary(labels, scores), BASELINE: summary(labels, baseline_rows)}
        ours, baseline = metrics["model"]["roc_auc"], metrics[BASELINE]["roc_auc"]
        with duckdb.get_connection() as con:
            champion = registry.champion(con, model_name)
            comparison = {}
            if champion and champion.version != model_version:
                champion_model = load_model(artifact_folder(repo, champion.version))
                if _saw_period(dataset, champion_model.manifest, target):
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
                    model=model_name,
                    version=model_version,
                    target_period=target,
                    window=model.manifest["window"],
                    training_data_version=model.manifest["training_data_version"],
                    metrics={**metrics["model"], "baseline_roc_auc": baseline},
                    gate_passed=passed,
                    gate_reason=reason,
                ),
            )
        groups = {column: by_group(holdout, labels, scores, column) for column in declared.group_by}
        card = model_card(model_name, dataset.model.description, model_version, target, metrics, groups, model.manifest)
        bins = calibration(labels, scores)
        with run_logger(context) as log:
            log.info("model evaluated", roc_auc=ours, baseline_roc_auc=baseline, target_period=target, gate=passed)
        yield dg.MaterializeResult(
            metadata={
                **metrics["model"],
                "baseline_roc_auc": baseline,
                "lift_over_baseline": ours - baseline,
                **{f"vs_champion/{name}": value for name, value in comparison.items()},
                "target_period": target,
                "holdout_rows": holdout.height,
                "model_card": dg.MetadataValue.md(card),
                "model_name": model_name,
                "model_version": model_version,
                "calibration": dg.MetadataValue.md(
                    calibration_chart(bins["predicted"], bins["observed"], bins["rows"])
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

    return model_evaluation


def _saw_period(dataset: Dataset, manifest: dict, period: str) -> bool:
    """Whether a model's training window covers ``period`` (its window is ``first..last``)."""
    first, last = manifest["window"].split("..")
    index = dataset.periods.index
    return index(first) <= index(period) <= index(last)
