"""The declaration of a dataset: what its ``defs.yaml`` may say, with types, bounds and defaults.

One pydantic model per section. These models are the one place each parameter is defined: the Launchpad's
run config is derived from them (with the declared values as defaults), and what a run overrides is
validated by them again. Unknown keys are errors, so a misspelt key never falls back to a default.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from mlplatform.data.sql import COLUMN, NAME
from mlplatform.datasets.periods import Grain

Name = Annotated[str, Field(pattern=NAME)]
Column = Annotated[str, Field(pattern=COLUMN)]


def _inside(path: str) -> str:
    if not path or PurePosixPath(path).is_absolute() or "\\" in path or ":" in path or ".." in path.split("/"):
        raise ValueError(f"{path!r} must be a relative path with / separators and no '..'")
    return path


# A path inside a folder: no way to climb out of it.
RelativePath = Annotated[str, AfterValidator(_inside)]

# YAML reads `start: 2016` as a number; a period key is text.
PeriodKey = Annotated[str, BeforeValidator(lambda value: str(value) if isinstance(value, int) else value)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeriodsSection(Section):
    grain: Grain = Field(description="How the data is cut in time: daily, monthly or yearly.")
    start: PeriodKey = Field(description="The first period's key (2013-01, 2016, 2013-01-31); there is no last one.")


class SourceSection(Section):
    time_column: Column = Field(description="The column whose value places a row in its period.")
    timezone: str | None = Field(
        default=None, description="For a timestamp column: the zone periods are cut in (stored values are UTC)."
    )


class LandingSection(Section):
    format: Literal["csv", "parquet"] = Field(
        default="csv", description="The format `mlplatform seed` writes; a source's files may be either."
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="A CSV file's delimiter.")
    null_string: str = Field(default="NA", description="How a CSV file writes a missing value.")
    encoding: Literal["utf-8", "utf-16", "latin-1"] = Field(
        default="utf-8", description="A CSV file's text encoding (UTF-8 may start with a byte-order mark)."
    )
    empty_periods: Literal["error", "allowed"] = Field(
        default="error",
        description="A period's file with a header and no rows: an error that leaves the period as it was, or "
        "allowed (the period loads with no rows).",
    )
    sources: dict[Name, SourceSection] = Field(
        min_length=1, description="Tables that arrive as one file per period: landing/<dataset>/<source>/<period>."
    )
    reference: list[Name] = Field(
        default_factory=list, description="Tables replaced whole: landing/<dataset>/reference/<name>.<format>."
    )


class SeedFile(Section):
    path: RelativePath = Field(description="Relative to the installed package's folder, or else to the dataset folder.")
    package: str | None = Field(default=None, description="An installed Python package that ships the file.")
    member: RelativePath | None = Field(default=None, description="The file inside a zip archive.")


class SeedSection(Section):
    """Where `mlplatform seed` finds the dataset's sample data, and SQL that shapes it into landing files."""

    files: dict[Name, SeedFile]
    tables: dict[Name, str] = Field(
        default_factory=dict,
        description="A landing source or reference table -> a SELECT over the files (default: the file of that name).",
    )
    periods: str = Field(description="The periods `mlplatform seed` writes by default, e.g. 2013-01..2013-12.")


class VolumeSection(Section):
    trailing_periods: int = Field(default=3, ge=1, description="How many earlier periods the volume check compares.")
    tolerance: float = Field(default=0.3, gt=0, description="Largest relative change in row count that passes.")


class ValidationSection(Section):
    max_quarantine_share: float = Field(
        default=0.01, ge=0, le=1, description="Largest share of a period's rows quarantined before downstream stops."
    )


class FeaturesSection(Section):
    sql: str = Field(default="features.sql", description="The feature SQL, in the dataset folder.")
    key: list[Column] = Field(min_length=1, description="The columns that name one row of the features.")
    lookback_periods: int = Field(
        default=0, ge=0, le=36, description="How many periods before the partition the SQL's history_* views hold."
    )
    params: dict[Column, int | float | str] = Field(
        default_factory=dict, description="Values the SQL reads as $name; a run may override them."
    )
    lineage: dict[Column, list[str]] = Field(
        default_factory=dict, description="Feature column -> the 'table.column's it is computed from."
    )


class Hyperparameters(Section):
    hidden: list[int] = Field(default=[64, 32], min_length=1, description="Widths of the MLP's hidden layers.")
    dropout: float = Field(default=0.1, ge=0, lt=1)
    learning_rate: float = Field(default=0.001, gt=0)
    weight_decay: float = Field(default=0.00001, ge=0)
    batch_size: int = Field(default=1024, ge=1)
    max_epochs: int = Field(default=20, ge=1)
    patience: int = Field(default=3, ge=1, description="Epochs without a better validation loss before stopping.")
    validation_share: float = Field(default=0.1, gt=0, lt=1, description="Latest share of the window to stop on.")
    refit: bool = Field(
        default=True,
        description=(
            "After early stopping has chosen the number of epochs, train again from the seed on the whole window, "
            "latest rows included, for that many epochs."
        ),
    )
    seed: int = Field(default=13, description="Same data, config and seed: same weights.")


class ModelSection(Section):
    name: Name = Field(description="The model's name in the registry: each name has its own champion.")
    description: str = Field(description="What the model predicts, for its model card.")
    label: Column = Field(description="The feature column the model predicts (boolean; null: no label yet).")
    categorical: list[Column] = Field(default_factory=list, description="Features embedded as categories.")
    numeric: list[Column] = Field(default_factory=list, description="Features standardised as numbers.")
    hyperparameters: Hyperparameters = Hyperparameters()


class TrainingSection(Section):
    target_period: PeriodKey = Field(description="The period held out to evaluate the model on.")
    window_periods: int = Field(default=6, ge=1, le=36, description="Periods before the target to train on.")
    time_order: list[Column] = Field(
        min_length=1, description="Columns that order rows in time: the latest rows stop early stopping."
    )


class EvaluationSection(Section):
    min_roc_auc: float = Field(default=0.65, ge=0, le=1, description="The least held-out ROC AUC that passes.")
    champion_tolerance: float = Field(
        default=0.005, ge=0, le=1, description="How far below the champion's ROC AUC on the same rows still passes."
    )
    baseline: list[Column] = Field(
        min_length=1, description="Feature columns scoring each row without a model (the first one not null)."
    )
    group_by: list[Column] = Field(default_factory=list, description="Columns the model card breaks metrics down by.")


class MonitoringSection(Section):
    drift_share: float = Field(default=0.5, gt=0, le=1, description="Share of drifted features for dataset drift.")
    max_auc_drop: float = Field(default=0.05, ge=0, le=1, description="AUC drop below held-out that calls a retrain.")
    cooldown_periods: int = Field(default=2, ge=0, description="No retrain within this many periods of the last.")
    retrain_policy: Literal["share", "risk"] = Field(
        default="share",
        description="share: retrain on dataset drift (drift_share of the features) or an AUC drop past "
        "max_auc_drop. risk: retrain when the ROC AUC the period's drift puts at risk (drift weighed by the "
        "champion's permutation importance), or the AUC it lost once labels arrived, exceeds retrain_cost.",
    )
    retrain_cost: float = Field(
        default=0.01, ge=0, le=1, description="risk policy: ROC AUC a retrain must be expected to win back."
    )


class RolloutSection(Section):
    """How a newly promoted model replaces the champion: on a growing canary share of each period's rows."""

    steps: list[float] = Field(
        default=[0.1, 0.5, 1.0],
        min_length=1,
        description="The shares of each period's rows a new model serves, in order, while the champion serves the "
        "rest; reaching the last, 1.0, makes it the champion. [1.0]: promote it whole at once.",
    )
    tolerance: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="How far below the champion's realised ROC AUC on the canary's rows the canary's may be and "
        "still step up; further below, the canary is rolled back.",
    )
    min_rows: int = Field(
        default=1000, ge=1, description="Labelled canary rows a period needs before it decides a step."
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[float]) -> list[float]:
        if steps[-1] != 1.0 or any(not 0 < share <= 1 for share in steps):
            raise ValueError(f"steps are shares in (0, 1] ending with 1.0, not {steps}")
        if any(later <= earlier for earlier, later in pairwise(steps)):
            raise ValueError(f"steps must grow, not {steps}")
        return steps


class DatasetDeclaration(Section):
    """A dataset's ``defs.yaml`` attributes."""

    name: Name
    description: str
    owners: list[str] = Field(default_factory=lambda: ["team:data-platform"])
    periods: PeriodsSection
    landing: LandingSection
    seed: SeedSection | None = None
    volume: VolumeSection = VolumeSection()
    validation: ValidationSection = ValidationSection()
    features: FeaturesSection
    predictor: ModelSection
    training: TrainingSection
    evaluation: EvaluationSection
    monitoring: MonitoringSection = MonitoringSection()
    rollout: RolloutSection = RolloutSection()

    @field_validator("owners")
    @classmethod
    def _owners(cls, owners: list[str]) -> list[str]:
        for owner in owners:
            if not (owner.startswith("team:") or re.fullmatch(r"[^@\s]+@[^@\s]+", owner)):
                raise ValueError(f"an owner is 'team:name' or an email address, not {owner!r}")
        return owners
