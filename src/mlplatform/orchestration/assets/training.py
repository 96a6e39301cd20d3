"""Training: a dataset's ``training_set`` (a window of feature periods plus a held-out period) and ``model``."""

import platform

import dagster as dg
import duckdb
import numpy as np
import polars as pl

from mlplatform.data.versioning import file_md5, git_revision
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN, TRAINING_SET_TABLE
from mlplatform.markdown import markdown_table
from mlplatform.ml.artifact import ARTIFACT_NAME
from mlplatform.ml.metrics import log_loss, roc_auc
from mlplatform.ml.training_set import HOLDOUT, SPLIT_COLUMN, TRAIN, build_training_set, window_periods
from mlplatform.monitoring.champion import monitored_columns, save_reference_profiles
from mlplatform.orchestration.assets.common import (
    DUCKDB_POOL,
    DVC_POOL,
    asset_key,
    common,
    recorded_md5s,
    run_logger,
    table_metadata,
    versioned,
)
from mlplatform.orchestration.config import run_config, section_schema, with_overrides
from mlplatform.orchestration.resources.dvc import DVCResource
from mlplatform.orchestration.resources.warehouse import Warehouse
from mlplatform.plots import training_curve_chart

MODEL = "model"


def training_set_path(dvc: DVCResource, dataset: Dataset):
    return dvc.repo().version_path(f"{dataset.name}/{TRAINING_SET_TABLE}", None)


def artifact_path(dvc: DVCResource, dataset: Dataset):
    """Where the dataset's newest trained artifact is written (each dataset its own, so two train at once)."""
    return dvc.repo().versions_dir / dataset.name / ARTIFACT_NAME


def training_assets(dataset: Dataset) -> list[dg.AssetsDefinition]:
    return [training_set_asset(dataset), model_asset(dataset)]


def training_set_asset(dataset: Dataset) -> dg.AssetsDefinition:
    declared = dataset.declaration.training

    @dg.asset(
        key=asset_key(dataset, TRAINING_SET_TABLE),
        kinds={"duckdb"},
        pool=DUCKDB_POOL,
        deps=[asset_key(dataset, FEATURES_TABLE)],
        config_schema=section_schema(declared, ["target_period", "window_periods"]),
        description="The features of the window periods (split = 'train') and of the target period "
        "(split = 'holdout'): a time-based split, so the model is always judged on a period it has not seen. "
        "Versioned with DVC.",
        **common(dataset, "training"),
    )
    def training_set(context: dg.AssetExecutionContext, duckdb: Warehouse, dvc: DVCResource):
        config = with_overrides(declared, run_config(context))
        try:
            dataset.periods.parse(config.target_period)
        except ValueError as error:
            raise dg.Failure(f"target_period: {error}") from None
        periods = window_periods(dataset, config.target_period, config.window_periods)
        with run_logger(context) as log, duckdb.get_connection() as con:
            try:
                counts = build_training_set(con, dataset, config.target_period, config.window_periods)
            except ValueError as error:
                raise dg.Failure(str(error)) from None
            version, data_version = versioned(con, dvc, dataset, TRAINING_SET_TABLE, None)
            log.info("training set built", **counts, target_period=config.target_period)
            features = asset_key(dataset, FEATURES_TABLE)
            inputs = recorded_md5s(context.instance, features, [*periods, config.target_period])
            return dg.MaterializeResult(
                data_version=data_version,
                metadata={
                    **table_metadata(con, dataset.table(TRAINING_SET_TABLE)),
                    **version,
                    "train_rows": counts[TRAIN],
                    "holdout_rows": counts[HOLDOUT],
                    "window": f"{periods[0]}..{periods[-1]}",
                    "target_period": config.target_period,
                    "dvc/inputs": dg.MetadataValue.json(inputs),
                },
            )

    return training_set


def model_asset(dataset: Dataset) -> dg.AssetsDefinition:
    declared = dataset.model
    label = declared.label
    time_order = dataset.declaration.training.time_order

    @dg.asset(
        key=asset_key(dataset, MODEL),
        kinds={"pytorch"},
        pool=DVC_POOL,
        deps=[asset_key(dataset, TRAINING_SET_TABLE)],
        config_schema=section_schema(declared.hyperparameters),
        description=f"{declared.description} A PyTorch tabular model (embeddings for "
        f"{', '.join(declared.categorical) or 'no categories'}; standardised {', '.join(declared.numeric) or 'none'};"
        " an MLP head), trained on the exact versioned bytes of training_set with early stopping, scored on its "
        "held-out period. The artifact (weights, a JSON manifest, and the reference profiles drift monitoring "
        "compares periods with) is versioned with DVC; mlplatform.ml.model.load_model loads it without Dagster.",
        **common(dataset, "training"),
    )
    def model(context: dg.AssetExecutionContext, dvc: DVCResource):
        # PyTorch (3 s to import) is imported by the steps that train or load a model, not by every run worker.
        from mlplatform.ml.importance import permutation_importance
        from mlplatform.ml.training import device, train

        hyperparameters = with_overrides(declared.hyperparameters, run_config(context))
        settings = declared.model_copy(update={"hyperparameters": hyperparameters})
        repo, source = dvc.repo(), training_set_path(dvc, dataset)
        frame = pl.read_parquet(source)
        holdout = frame.filter((pl.col(SPLIT_COLUMN) == HOLDOUT) & pl.col(label).is_not_null())
        train_periods = frame.filter(pl.col(SPLIT_COLUMN) == TRAIN)[PERIOD_COLUMN]
        with run_logger(context) as log:
            result = train(
                frame.filter(pl.col(SPLIT_COLUMN) == TRAIN),
                settings,
                time_order,
                on_epoch=lambda epoch: log.info("epoch done", **epoch.__dict__),
            )
            labels, scores = holdout[label].cast(pl.Int8).to_numpy(), result.model.predict(holdout)
            metrics = {"holdout_roc_auc": roc_auc(labels, scores), "holdout_log_loss": log_loss(labels, scores)}
            # What the retraining signal weighs each feature's drift by (monitoring.champion.auc_at_risk).
            features = [*declared.categorical, *declared.numeric]
            importance = {
                feature: round(value, 6)
                for feature, value in permutation_importance(result.model, holdout, labels, features).items()
            }
            manifest = {
                "model": declared.name,
                "dataset": dataset.name,
                "metrics": metrics,
                "best_epoch": result.best_epoch,
                "training_data_version": file_md5(source),
                "window": f"{train_periods.min()}..{train_periods.max()}",
                "target_period": holdout[PERIOD_COLUMN].first(),
                "feature_importance": importance,
                "code_version": git_revision(repo.root),
                "libraries": _library_versions(),
            }
            folder = result.model.save(artifact_path(dvc, dataset), manifest)
            columns = monitored_columns(declared.categorical, declared.numeric)
            save_reference_profiles(folder, source, f"{SPLIT_COLUMN} = '{TRAIN}'", scores, columns)
            version = repo.track(folder)
            log.info("model trained", **metrics, best_epoch=result.best_epoch, md5=version.md5)
        curve = pl.DataFrame([epoch.__dict__ for epoch in result.curve]).with_columns(pl.selectors.float().round(5))
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version.md5),
            metadata={
                **metrics,
                "model_name": declared.name,
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.curve),
                "training_curve": dg.MetadataValue.md(
                    training_curve_chart(curve["epoch"], curve["train_loss"], curve["validation_loss"])
                    + "\n\n"
                    + markdown_table(curve)
                ),
                "training_data_version": manifest["training_data_version"],
                "feature_importance": dg.MetadataValue.md(
                    "ROC AUC lost on the held-out period when the feature is shuffled (permutation importance):\n\n"
                    + markdown_table(
                        pl.DataFrame({"feature": list(importance), "auc_lost": list(importance.values())}).sort(
                            "auc_lost", descending=True
                        )
                    )
                ),
                "device": str(device()),
                "dvc/md5": version.md5,
                "dvc/path": version.path,
                "dvc/remote": version.remote,
            },
        )

    return model


def _library_versions() -> dict[str, str]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "polars": pl.__version__,
        "duckdb": duckdb.__version__,
    }
