"""Training a dataset's model: a time-ordered validation slice, early stopping, reproducible on CPU."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import torch
from torch import nn

from mlplatform.datasets.declaration import Hyperparameters, ModelSection
from mlplatform.ml.model import Preprocessor, TabularModel, build_network


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    validation_loss: float


@dataclass(frozen=True)
class TrainingResult:
    model: TabularModel
    curve: list[EpochResult]
    best_epoch: int


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def split_by_time(
    frame: pl.DataFrame, label: str, time_order: list[str], validation_share: float
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Labelled rows in time order: the earlier ones to fit, the latest ``validation_share`` to stop on."""
    labelled = frame.filter(pl.col(label).is_not_null()).sort(time_order)
    cut = int(labelled.height * (1 - validation_share))
    if cut == 0 or cut == labelled.height:
        raise ValueError(f"{labelled.height} labelled rows cannot be split into training and validation")
    return labelled.slice(0, cut), labelled.slice(cut)


def train(
    frame: pl.DataFrame,
    model: ModelSection,
    time_order: list[str],
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> TrainingResult:
    """Fit on the window's earlier rows and stop early on its latest ones; with ``refit``, train again on the
    whole window for the best number of epochs. Same inputs, same weights."""
    config: Hyperparameters = model.hyperparameters
    fit_rows, validation_rows = split_by_time(frame, model.label, time_order, config.validation_share)
    network, preprocessor, curve, best_epoch = _fit(fit_rows, validation_rows, model, on_epoch)
    if config.refit:
        # The latest rows are the most like the periods the model will score: an early-stopped model never
        # learns from them, so the final model sees the whole window (the stopping slice only chose the epochs).
        network, preprocessor, _, _ = _fit(pl.concat([fit_rows, validation_rows]), None, model, None, best_epoch)
    hyperparameters = config.model_dump()
    trained = TabularModel(network.cpu(), preprocessor, hyperparameters, model.label)
    return TrainingResult(trained, curve, best_epoch)


def _fit(
    fit_rows: pl.DataFrame,
    validation_rows: pl.DataFrame | None,
    model: ModelSection,
    on_epoch: Callable[[EpochResult], None] | None,
    epochs: int | None = None,
) -> tuple[nn.Module, Preprocessor, list[EpochResult], int]:
    """Train a network from the seed: stopped early on ``validation_rows`` (keeping its best epoch's weights),
    or, without them, for exactly ``epochs`` epochs."""
    config: Hyperparameters = model.hyperparameters
    torch.manual_seed(config.seed)
    preprocessor = Preprocessor.fit(fit_rows, model.categorical, model.numeric)
    target = device()
    network = build_network(preprocessor, config.model_dump()).to(target)
    fit_inputs = _tensors(preprocessor, fit_rows, model.label, target)
    validation_inputs = (
        None if validation_rows is None else _tensors(preprocessor, validation_rows, model.label, target)
    )
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss = nn.BCEWithLogitsLoss()
    shuffler = torch.Generator().manual_seed(config.seed)

    curve: list[EpochResult] = []
    best_state, best_loss, best_epoch = None, float("inf"), epochs or 0
    for epoch in range(1, (epochs or config.max_epochs) + 1):
        network.train()
        order = torch.randperm(fit_rows.height, generator=shuffler).to(target)
        total = 0.0
        for start in range(0, fit_rows.height, config.batch_size):
            rows = order[start : start + config.batch_size]
            optimiser.zero_grad()
            batch_loss = loss(network(fit_inputs[0][rows], fit_inputs[1][rows]), fit_inputs[2][rows])
            batch_loss.backward()
            optimiser.step()
            total += batch_loss.item() * len(rows)
        if validation_inputs is None:
            continue
        network.eval()
        with torch.no_grad():
            validation_loss = loss(network(validation_inputs[0], validation_inputs[1]), validation_inputs[2]).item()
        result = EpochResult(epoch, total / fit_rows.height, validation_loss)
        curve.append(result)
        if on_epoch:
            on_epoch(result)
        if validation_loss < best_loss:
            best_state, best_loss, best_epoch = copy.deepcopy(network.state_dict()), validation_loss, epoch
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        network.load_state_dict(best_state)
    return network, preprocessor, curve, best_epoch


def _tensors(
    preprocessor: Preprocessor, frame: pl.DataFrame, label: str, target: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = torch.tensor(frame[label].cast(pl.Float32).to_numpy())
    return (
        preprocessor.categorical(frame).to(target),
        preprocessor.numeric(frame).to(target),
        labels.to(target),
    )
