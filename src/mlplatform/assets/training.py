"""Training: ``training_set`` (a window of feature months plus a held-out month) and ``delay_model``."""

import platform
from dataclasses import asdict

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import torch
from pydantic import Field

from mlplatform.assets.common import (
    DUCKDB_POOL,
    DVC_POOL,
    OWNERS,
    recorded_md5s,
    run_logger,
    table_metadata,
    versioned,
)
from mlplatform.markdown import markdown_table
from mlplatform.metrics import log_loss, roc_auc
from mlplatform.model import ARTIFACT_NAME, LABEL
from mlplatform.monitoring import save_reference_profiles
from mlplatform.params import param
from mlplatform.plots import training_curve_chart
from mlplatform.resources.dvc import DVCResource
from mlplatform.resources.warehouse import Warehouse
from mlplatform.training import TrainingConfig, device, train
from mlplatform.training_set import HOLDOUT, SPLIT_COLUMN, TRAIN, TRAINING_SET_TABLE, build_training_set, window_months
from mlplatform.versioning import file_md5, git_revision


class TrainingSetConfig(dg.Config):
    target_month: str = Field(
        default=param("training", "target_month"), description="The month held out to evaluate the model on."
    )
    window_months: int = Field(
        default=param("training", "window_months"), ge=1, le=12, description="Months before the target to train on."
    )


@dg.asset(group_name="training", kinds={"duckdb"}, owners=OWNERS, pool=DUCKDB_POOL, deps=["flight_features"])
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig, duckdb: Warehouse, dvc: DVCResource):
    """The features of the window months (``split = 'train'``) and of the target month (``split = 'holdout'``):
    a time-based split, so the model is always judged on a month it has not seen. Versioned with DVC."""
    months = window_months(config.target_month, config.window_months)
    with run_logger(context) as log, duckdb.get_connection() as con:
        counts = build_training_set(con, config.target_month, config.window_months)
        version, data_version = versioned(con, dvc, TRAINING_SET_TABLE, None)
        log.info("training set built", **counts, target_month=config.target_month)
        inputs = recorded_md5s(context.instance, "flight_features", [*months, config.target_month])
        return dg.MaterializeResult(
            data_version=data_version,
            metadata={
                **table_metadata(con, TRAINING_SET_TABLE),
                **version,
                "train_rows": counts[TRAIN],
                "holdout_rows": counts[HOLDOUT],
                "window": f"{months[0]}..{months[-1]}",
                "target_month": config.target_month,
                "dvc/inputs": dg.MetadataValue.json(inputs),
            },
        )


class DelayModelConfig(dg.Config):
    hidden: list[int] = Field(default=param("training", "hidden"), description="Widths of the MLP's hidden layers.")
    dropout: float = Field(default=param("training", "dropout"), ge=0, lt=1)
    learning_rate: float = Field(default=param("training", "learning_rate"), gt=0)
    weight_decay: float = Field(default=param("training", "weight_decay"), ge=0)
    batch_size: int = Field(default=param("training", "batch_size"), ge=1)
    max_epochs: int = Field(default=param("training", "max_epochs"), ge=1)
    patience: int = Field(
        default=param("training", "patience"), ge=1, description="Epochs without a better validation loss to stop."
    )
    validation_share: float = Field(
        default=param("training", "validation_share"), gt=0, lt=1, description="Latest share of the window to stop on."
    )
    seed: int = Field(default=param("training", "seed"), description="Same data, config and seed: same weights.")


@dg.asset(group_name="training", kinds={"pytorch"}, owners=OWNERS, pool=DVC_POOL, deps=["training_set"])
def delay_model(context: dg.AssetExecutionContext, config: DelayModelConfig, dvc: DVCResource):
    """A PyTorch tabular model of departure delays (embeddings for carrier, origin, dest, hour and weekday;
    standardised numeric features; an MLP head), trained on the exact versioned bytes of ``training_set``
    with early stopping, scored on its held-out month. The artifact (weights, a JSON manifest, and the
    reference profiles that drift monitoring compares months with) is versioned with DVC;
    ``mlplatform.model.load_model`` loads it without Dagster."""
    repo = dvc.repo()
    source = repo.version_path(TRAINING_SET_TABLE, None)
    frame = pl.read_parquet(source)
    holdout = frame.filter((pl.col(SPLIT_COLUMN) == HOLDOUT) & pl.col(LABEL).is_not_null())
    train_months = frame.filter(pl.col(SPLIT_COLUMN) == TRAIN)["partition_month"]
    settings = TrainingConfig(**{**config.model_dump(), "hidden": tuple(config.hidden)})
    with run_logger(context) as log:
        result = train(
            frame.filter(pl.col(SPLIT_COLUMN) == TRAIN),
            settings,
            on_epoch=lambda epoch: log.info("epoch done", **asdict(epoch)),
        )
        labels, scores = holdout[LABEL].cast(pl.Int8).to_numpy(), result.model.predict(holdout)
        metrics = {"holdout_roc_auc": roc_auc(labels, scores), "holdout_log_loss": log_loss(labels, scores)}
        manifest = {
            "metrics": metrics,
            "best_epoch": result.best_epoch,
            "training_data_version": file_md5(source),
            "window": f"{train_months.min()}..{train_months.max()}",
            "target_month": holdout["partition_month"].first(),
            "code_version": git_revision(repo.root),
            "libraries": _library_versions(),
        }
        folder = result.model.save(repo.versions_dir / ARTIFACT_NAME, manifest)
        save_reference_profiles(folder, source, f"{SPLIT_COLUMN} = '{TRAIN}'", scores)
        version = repo.track(folder)
        log.info("model trained", **metrics, best_epoch=result.best_epoch, md5=version.md5)
    curve = pl.DataFrame([asdict(epoch) for epoch in result.curve]).with_columns(pl.selectors.float().round(5))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version.md5),
        metadata={
            **metrics,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.curve),
            "training_curve": dg.MetadataValue.md(
                training_curve_chart(curve["epoch"], curve["train_loss"], curve["validation_loss"])
                + "\n\n"
                + markdown_table(curve)
            ),
            "training_data_version": manifest["training_data_version"],
            "device": str(device()),
            "dvc/md5": version.md5,
            "dvc/path": version.path,
            "dvc/remote": version.remote,
        },
    )


def _library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "polars": pl.__version__,
        "duckdb": duckdb.__version__,
    }
