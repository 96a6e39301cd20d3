"""The platform's model: a PyTorch tabular network over a dataset's declared features, its preprocessing,
and its artifact.

Categorical features get embeddings with an out-of-vocabulary bucket (index 0), numeric features are
standardised with statistics fitted on the training window only (a missing value becomes 0 after scaling,
with a 0/1 missing indicator beside it), and an MLP head gives the logit of the label.
An artifact (:mod:`mlplatform.ml.artifact`) is a folder holding ``weights.pt`` and ``manifest.json``;
:func:`load_model` needs no Dagster.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from mlplatform.ml.artifact import MANIFEST_FILE, WEIGHTS_FILE


@dataclass(frozen=True)
class Preprocessor:
    """Vocabularies and normalisation statistics, fitted on training rows only. Their keys, in order, are the
    model's categorical and numeric features."""

    vocabularies: dict[str, list[str]]
    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def fit(cls, frame: pl.DataFrame, categorical: list[str], numeric: list[str]) -> Preprocessor:
        vocabularies = {
            column: sorted(frame[column].cast(pl.String).drop_nulls().unique().to_list()) for column in categorical
        }
        means = {column: float(frame[column].cast(pl.Float64).mean() or 0.0) for column in numeric}
        stds = {column: float(frame[column].cast(pl.Float64).std() or 0.0) or 1.0 for column in numeric}
        return cls(vocabularies, means, stds)

    @property
    def categorical_columns(self) -> list[str]:
        return list(self.vocabularies)

    @property
    def numeric_columns(self) -> list[str]:
        return list(self.means)

    def categorical(self, frame: pl.DataFrame) -> torch.Tensor:
        """Category indices, one column per categorical feature; 0 for anything not seen in training."""
        columns = [np.zeros(frame.height, dtype=np.int64)] if not self.vocabularies else []
        for column in self.categorical_columns:
            lookup = pl.DataFrame(
                {column: self.vocabularies[column], "_index": range(1, len(self.vocabularies[column]) + 1)},
                schema={column: pl.String, "_index": pl.Int64},
            )
            values = frame.select(pl.col(column).cast(pl.String)).join(
                lookup, on=column, how="left", maintain_order="left"
            )
            columns.append(values["_index"].fill_null(0).to_numpy())
        return torch.from_numpy(np.stack(columns, axis=1).astype(np.int64))

    def numeric(self, frame: pl.DataFrame) -> torch.Tensor:
        """Standardised numeric features followed by their missing indicators."""
        scaled = frame.select(
            ((pl.col(c).cast(pl.Float64) - self.means[c]) / self.stds[c]).fill_null(0.0).fill_nan(0.0).alias(c)
            for c in self.numeric_columns
        )
        missing = frame.select(pl.col(c).is_null().cast(pl.Float64).alias(f"{c}_missing") for c in self.numeric_columns)
        values = pl.concat([scaled, missing], how="horizontal").to_numpy().astype(np.float32)
        # No numeric feature: a frame of no columns has no rows either, so give it the frame's height back.
        return torch.from_numpy(values.reshape(frame.height, 2 * len(self.numeric_columns)))


class TabularNetwork(nn.Module):
    def __init__(self, cardinalities: list[int], numeric_width: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        # One extra row per table: index 0 is the out-of-vocabulary bucket.
        self.embeddings = nn.ModuleList(nn.Embedding(size + 1, min(16, (size + 2) // 2)) for size in cardinalities)
        width = sum(embedding.embedding_dim for embedding in self.embeddings) + numeric_width
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        embedded = [embedding(categorical[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.head(torch.cat([*embedded, numeric], dim=1)).squeeze(1)


@dataclass(frozen=True)
class TabularModel:
    """A trained network with the preprocessing it was trained with, and the label it predicts."""

    network: TabularNetwork
    preprocessor: Preprocessor
    hyperparameters: dict[str, Any]
    label: str
    manifest: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, frame: pl.DataFrame, batch_rows: int = 65_536) -> np.ndarray:
        """The probability that each row's label is true."""
        self.network.eval()
        outputs = []
        for start in range(0, frame.height, batch_rows):
            batch = frame.slice(start, batch_rows)
            logits = self.network(self.preprocessor.categorical(batch), self.preprocessor.numeric(batch))
            outputs.append(torch.sigmoid(logits).numpy())
        return np.concatenate(outputs) if outputs else np.empty(0, dtype=np.float32)

    def save(self, folder: Path, manifest: dict[str, Any]) -> Path:
        """Write ``weights.pt`` and ``manifest.json`` (preprocessing, hyperparameters and ``manifest``)."""
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), folder / WEIGHTS_FILE)
        document = {
            **manifest,
            "features": {
                "categorical": self.preprocessor.categorical_columns,
                "numeric": self.preprocessor.numeric_columns,
                "label": self.label,
            },
            "preprocessor": asdict(self.preprocessor),
            "hyperparameters": self.hyperparameters,
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return folder


def build_network(preprocessor: Preprocessor, hyperparameters: dict[str, Any]) -> TabularNetwork:
    # With no categorical feature, one constant column keeps the network's shape the same.
    cardinalities = [len(vocabulary) for vocabulary in preprocessor.vocabularies.values()] or [0]
    return TabularNetwork(
        cardinalities=cardinalities,
        numeric_width=2 * len(preprocessor.means),
        hidden=tuple(hyperparameters["hidden"]),
        dropout=hyperparameters["dropout"],
    )


def load_model(folder: Path) -> TabularModel:
    """Load an artifact folder written by :meth:`TabularModel.save`; no Dagster needed."""
    manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text())
    # The manifest's JSON sorts its keys; the feature lists keep the columns' order.
    stored, features = manifest["preprocessor"], manifest["features"]
    preprocessor = Preprocessor(
        {column: stored["vocabularies"][column] for column in features["categorical"]},
        {column: stored["means"][column] for column in features["numeric"]},
        {column: stored["stds"][column] for column in features["numeric"]},
    )
    network = build_network(preprocessor, manifest["hyperparameters"])
    network.load_state_dict(torch.load(Path(folder) / WEIGHTS_FILE, weights_only=True))
    return TabularModel(network, preprocessor, manifest["hyperparameters"], manifest["features"]["label"], manifest)
