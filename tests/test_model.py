"""A dataset's model without Dagster: preprocessing, reproducible training, artifacts, unseen categories, and a
model of numeric or categorical features only. Real features of every declared dataset, and synthetic frames."""

import json
import subprocess
import sys
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl
import pytest
import torch

from mlplatform.data.features import build_features
from mlplatform.data.landing import period_file, reference_file
from mlplatform.data.validation import split_partition
from mlplatform.data.versioning import file_md5
from mlplatform.data.warehouse import load_raw_partition, load_reference
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import FEATURES_TABLE, PERIOD_COLUMN
from mlplatform.datasets.declaration import Hyperparameters, ModelSection
from mlplatform.ml.artifact import MANIFEST_FILE, WEIGHTS_FILE
from mlplatform.ml.metrics import roc_auc
from mlplatform.ml.model import Preprocessor, TabularModel, load_model
from mlplatform.ml.training import TrainingResult, split_by_time, train

SMALL = {"hidden": [32], "max_epochs": 4, "batch_size": 1024, "learning_rate": 3e-3}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small batches train fastest on one thread (several only contend, badly on a busy machine); the same thread
    count throughout keeps two trainings bit for bit equal."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(section: ModelSection, **overrides) -> ModelSection:
    """The section with small, fast hyperparameters (validated like a run's overrides)."""
    hyperparameters = Hyperparameters.model_validate({**section.hyperparameters.model_dump(), **SMALL, **overrides})
    return section.model_copy(update={"hyperparameters": hyperparameters})


@dataclass(frozen=True)
class Real:
    """A dataset's real features of its first three periods, and a small model trained on the second one (the
    first has no history behind its rates) to be scored on the third."""

    dataset: Dataset
    frames: dict[str, pl.DataFrame]
    result: TrainingResult

    @property
    def time_order(self) -> list[str]:
        return self.dataset.declaration.training.time_order

    @property
    def train_frame(self) -> pl.DataFrame:
        return list(self.frames.values())[1]

    @property
    def next_frame(self) -> pl.DataFrame:
        return list(self.frames.values())[2]

    @property
    def labelled_next(self) -> pl.DataFrame:
        return self.next_frame.filter(pl.col(self.dataset.label).is_not_null())


def real_features(dataset: Dataset, landing, folder) -> dict[str, pl.DataFrame]:
    """Load, validate and build features for the dataset's first three periods, as the pipeline does."""
    first = dataset.periods.start
    periods = dataset.periods.between(first, dataset.periods.shift(first, 2))
    declared = dataset.declaration.features
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        for table in dataset.reference:
            load_reference(con, dataset, dataset.contracts[table], reference_file(landing, dataset, table))
        for period in periods:
            for source in dataset.sources:
                contract = dataset.contracts[source]
                load_raw_partition(con, dataset, contract, period, period_file(landing, dataset, source, period))
                split_partition(con, dataset, contract, period)
            build_features(con, dataset, period, dict(declared.params), declared.lookback_periods)
        frame = pl.from_arrow(con.sql(f"SELECT * FROM {dataset.table(FEATURES_TABLE)}").to_arrow_table())
    return {period: frame.filter(pl.col(PERIOD_COLUMN) == period) for period in periods}


@pytest.fixture(scope="module")
def real(seeded_landing, tmp_path_factory):
    """``real(dataset)``: that dataset's :class:`Real`, built on first use and kept for the module."""
    built: dict[str, Real] = {}

    def get(dataset: Dataset) -> Real:
        if dataset.name not in built:
            frames = real_features(dataset, seeded_landing, tmp_path_factory.mktemp(dataset.name))
            result = train(list(frames.values())[1], small(dataset.model), dataset.declaration.training.time_order)
            built[dataset.name] = Real(dataset, frames, result)
        return built[dataset.name]

    return get


def artifact_md5s(folder) -> dict[str, str]:
    return {path.name: file_md5(path) for path in sorted(folder.iterdir())}


def test_the_preprocessor_is_fitted_on_training_rows_only(dataset, real):
    data = real(dataset)
    frame, model = data.train_frame, dataset.model
    fit_rows, validation_rows = split_by_time(frame, dataset.label, data.time_order, 0.1)
    assert fit_rows.height + validation_rows.height == frame[dataset.label].drop_nulls().len()
    assert validation_rows.height == frame[dataset.label].drop_nulls().len() - int(
        frame[dataset.label].drop_nulls().len() * 0.9
    )
    # The validation rows are the latest in the declared time order.
    assert fit_rows.select(data.time_order).row(-1) <= validation_rows.select(data.time_order).row(0)
    preprocessor = Preprocessor.fit(fit_rows, model.categorical, model.numeric)
    assert preprocessor.categorical_columns == model.categorical and preprocessor.numeric_columns == model.numeric
    for column in model.numeric:
        assert preprocessor.means[column] == pytest.approx(fit_rows[column].cast(pl.Float64).mean())
        assert preprocessor.stds[column] == pytest.approx(fit_rows[column].cast(pl.Float64).std())
    for column in model.categorical:
        assert preprocessor.vocabularies[column] == sorted(fit_rows[column].cast(pl.String).drop_nulls().unique())


def test_training_is_reproducible_and_learns(dataset, real, tmp_path):
    """Same data, config and seed: the same curve, weights and artifact bytes (its DVC md5), whatever order the
    rows come in; and the model beats the dataset's minimum ROC AUC on the next period."""
    data = real(dataset)
    first = data.result
    shuffled = data.train_frame.sample(fraction=1.0, shuffle=True, seed=1)
    second = train(shuffled, small(dataset.model), data.time_order)
    assert [epoch.validation_loss for epoch in first.curve] == [epoch.validation_loss for epoch in second.curve]
    for name, weights in first.model.network.state_dict().items():
        assert torch.equal(weights, second.model.network.state_dict()[name]), name
    manifest = {"training_data_version": "abc", "window": "w"}
    saved = [result.model.save(tmp_path / name, manifest) for name, result in (("a", first), ("b", second))]
    assert artifact_md5s(saved[0]) == artifact_md5s(saved[1])
    assert set(artifact_md5s(saved[0])) == {WEIGHTS_FILE, MANIFEST_FILE}

    held_out = data.labelled_next
    scores = first.model.predict(held_out)
    auc = roc_auc(held_out[dataset.label].cast(pl.Int8).to_numpy(), scores)
    assert auc > dataset.declaration.evaluation.min_roc_auc
    assert first.best_epoch == min(first.curve, key=lambda epoch: epoch.validation_loss).epoch


def test_another_seed_gives_another_artifact(flights, real, tmp_path):
    data = real(flights)
    other = train(data.train_frame, small(flights.model, seed=14, max_epochs=1), data.time_order)
    same = train(data.train_frame, small(flights.model, max_epochs=1), data.time_order)
    md5s = [artifact_md5s(result.model.save(tmp_path / name, {})) for name, result in (("a", other), ("b", same))]
    assert md5s[0][WEIGHTS_FILE] != md5s[1][WEIGHTS_FILE]
    assert md5s[0][MANIFEST_FILE] != md5s[1][MANIFEST_FILE]  # the manifest records the seed


def test_the_artifact_round_trips(dataset, real, tmp_path):
    data = real(dataset)
    model = data.result.model
    folder = model.save(tmp_path / "model", {"training_data_version": "abc", "model": dataset.model.name})
    loaded = load_model(folder)
    np.testing.assert_array_equal(loaded.predict(data.next_frame), model.predict(data.next_frame))
    assert loaded.manifest["training_data_version"] == "abc" and loaded.manifest["model"] == dataset.model.name
    assert loaded.manifest["features"] == {
        "categorical": dataset.model.categorical,
        "numeric": dataset.model.numeric,
        "label": dataset.label,
    }
    assert loaded.label == dataset.label and loaded.hyperparameters == small(dataset.model).hyperparameters.model_dump()
    assert loaded.preprocessor == model.preprocessor  # the columns' order too, though the JSON sorts its keys


def test_a_fresh_interpreter_loads_and_scores_an_artifact_without_dagster(flights, employment, real, tmp_path):
    expected = {}
    for dataset in (flights, employment):
        data = real(dataset)
        data.result.model.save(tmp_path / dataset.name, {})
        data.next_frame.head(200).write_parquet(tmp_path / f"{dataset.name}.parquet")
        expected[dataset.name] = data.result.model.predict(data.next_frame.head(200)).tolist()
    code = (
        "import json, sys, pathlib, polars as pl\n"
        "from mlplatform.ml.model import load_model\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "scores = {name: load_model(root / name).predict(pl.read_parquet(root / f'{name}.parquet')).tolist()\n"
        "          for name in sys.argv[2:]}\n"
        "print(json.dumps({'dagster': 'dagster' in sys.modules, 'scores': scores}))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), *expected], capture_output=True, text=True, check=True
    )
    output = json.loads(run.stdout)
    assert output["dagster"] is False and list(output["scores"]) == list(expected)
    for name, scores in expected.items():  # another thread count may round the last bit differently
        np.testing.assert_allclose(output["scores"][name], scores, rtol=1e-6)


def test_unseen_categories_and_missing_values_are_scored(dataset, real):
    model, declared = real(dataset).result.model, dataset.model
    rows = real(dataset).next_frame.head(5)

    def unseen(value: str) -> pl.DataFrame:
        return rows.with_columns(
            *[pl.lit(value).alias(column) for column in declared.categorical],
            *[pl.lit(None, pl.Float64).alias(column) for column in declared.numeric],
        )

    odd = unseen("ZZ")
    scores = model.predict(odd)
    assert scores.shape == (5,) and np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    assert model.preprocessor.categorical(odd).tolist() == [[0] * len(declared.categorical)] * 5
    # Missing numbers sit at the training mean (0 after scaling) with their missing indicator set.
    width = len(declared.numeric)
    assert model.preprocessor.numeric(odd).tolist() == [[0.0] * width + [1.0] * width] * 5
    # Every unseen value falls into the same out-of-vocabulary bucket: the same score.
    np.testing.assert_array_equal(model.predict(unseen("YY")), scores)
    # The same rows as they were: categories seen in training, so the zeros above are the unseen values'.
    assert (model.preprocessor.categorical(rows) > 0).all()
    assert model.predict(rows.head(0)).shape == (0,)


def test_too_few_labelled_rows_are_refused(dataset, real):
    data = real(dataset)
    with pytest.raises(ValueError, match="cannot be split"):
        split_by_time(data.train_frame.head(1), dataset.label, data.time_order, 0.1)
    unlabelled = data.train_frame.with_columns(pl.lit(None, pl.Boolean).alias(dataset.label))
    with pytest.raises(ValueError, match="0 labelled rows"):
        train(unlabelled, small(dataset.model), data.time_order)


def synthetic(rows: int, seed: int) -> pl.DataFrame:
    """A label that depends on a number ``x`` and, separately, on a category ``c``; ``z`` and ``d`` are noise."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=rows), rng.normal(size=rows)
    c, d = rng.choice(["a", "b", "c", "d"], rows), rng.choice(["p", "q"], rows)
    shift = np.select([c == "a", c == "b", c == "c"], [1.5, 0.5, -0.5], -1.5)
    return pl.DataFrame(
        {
            "t": np.arange(rows),
            "x": x,
            "z": z,
            "c": c,
            "d": d,
            "y_numeric": 2 * x + rng.logistic(size=rows) > 0,
            "y_categorical": shift + 0.5 * rng.logistic(size=rows) > 0,
        }
    )


@pytest.mark.parametrize(
    ("label", "categorical", "numeric"),
    [("y_numeric", [], ["x", "z"]), ("y_categorical", ["c", "d"], [])],
    ids=["numeric only", "categorical only"],
)
def test_a_model_of_only_numeric_or_only_categorical_features_trains_saves_and_loads(
    label, categorical, numeric, tmp_path
):
    section = small(
        ModelSection(name="synthetic", description="A test.", label=label, categorical=categorical, numeric=numeric)
    )
    result = train(synthetic(4000, 1), section, ["t"])
    model: TabularModel = result.model
    fresh = synthetic(2000, 2)
    scores = model.predict(fresh)
    assert roc_auc(fresh[label].to_numpy(), scores) > 0.8
    assert model.preprocessor.categorical_columns == categorical and model.preprocessor.numeric_columns == numeric
    assert tuple(model.preprocessor.numeric(fresh).shape) == (2000, 2 * len(numeric))
    loaded = load_model(model.save(tmp_path / "model", {}))
    np.testing.assert_array_equal(loaded.predict(fresh), scores)
    assert loaded.manifest["features"] == {"categorical": categorical, "numeric": numeric, "label": label}
    assert loaded.predict(fresh.head(0)).shape == (0,)


def test_refit_trains_again_on_the_whole_window_for_the_best_epoch_count(dataset, real):
    """Early stopping chooses the epochs on the latest rows; the refit model then learns from those rows too:
    its statistics are the whole window's, its curve and best epoch the early-stopped run's."""
    data = real(dataset)
    frame, label = data.train_frame, dataset.label
    stopped = train(frame, small(dataset.model, refit=False), data.time_order)
    refit = train(frame, small(dataset.model, refit=True), data.time_order)
    assert refit.best_epoch == stopped.best_epoch and refit.curve == stopped.curve
    fit_rows, _ = split_by_time(frame, label, data.time_order, dataset.model.hyperparameters.validation_share)
    labelled = frame.filter(pl.col(label).is_not_null())
    column = dataset.model.numeric[0]
    assert stopped.model.preprocessor.means[column] == pytest.approx(fit_rows[column].cast(pl.Float64).mean())
    assert refit.model.preprocessor.means[column] == pytest.approx(labelled[column].cast(pl.Float64).mean())
    assert refit.model.preprocessor.means[column] != pytest.approx(stopped.model.preprocessor.means[column])
    assert refit.model.hyperparameters["refit"] is True
    # Same seed, same inputs: the refit is as reproducible as the early-stopped run.
    again = train(frame, small(dataset.model, refit=True), data.time_order)
    for name, weights in refit.model.network.state_dict().items():
        assert torch.equal(weights, again.model.network.state_dict()[name]), name
