"""The delay model without Dagster: preprocessing, reproducible training, artifacts, unseen categories."""

import numpy as np
import polars as pl
import pytest
import torch

from mlplatform.contracts import FLIGHTS, PLANES, WEATHER
from mlplatform.features import FEATURES_TABLE, build_features
from mlplatform.metrics import roc_auc
from mlplatform.model import CATEGORICAL, NUMERIC, Preprocessor, load_model
from mlplatform.training import TrainingConfig, split_by_time, train
from mlplatform.validation import split_partition
from mlplatform.warehouse import load_raw_partition, load_reference

SMALL = TrainingConfig.from_params_file(hidden=(32,), max_epochs=4, batch_size=256, learning_rate=3e-3)


@pytest.fixture(scope="module")
def features(seeded_landing, tmp_path_factory):
    """Real flight_features for 2013-01..2013-03, as polars frames by month."""
    import duckdb

    with duckdb.connect(str(tmp_path_factory.mktemp("model") / "warehouse.duckdb")) as con:
        load_reference(con, PLANES, seeded_landing / "reference" / "planes.csv")
        for month in ("2013-01", "2013-02", "2013-03"):
            for contract in (FLIGHTS, WEATHER):
                load_raw_partition(con, contract, month, seeded_landing / contract.name / f"{month}.csv")
                split_partition(con, contract, month)
            build_features(con, month)
        frame = pl.from_arrow(con.sql(f"SELECT * FROM {FEATURES_TABLE}").to_arrow_table())
    return {month: frame.filter(pl.col("partition_month") == month) for month in ("2013-01", "2013-02", "2013-03")}


def test_the_preprocessor_is_fitted_on_training_rows_only(features):
    fit_rows, validation_rows = split_by_time(features["2013-02"], 0.1)
    assert fit_rows.height + validation_rows.height == features["2013-02"]["is_delayed"].drop_nulls().len()
    assert fit_rows["day"].max() <= validation_rows["day"].min()
    preprocessor = Preprocessor.fit(fit_rows)
    assert preprocessor.means["distance"] == pytest.approx(fit_rows["distance"].mean())
    assert set(preprocessor.vocabularies) == set(CATEGORICAL)


def test_training_is_reproducible_and_learns(features):
    first = train(features["2013-02"], SMALL)
    second = train(features["2013-02"], SMALL)
    assert [epoch.validation_loss for epoch in first.curve] == [epoch.validation_loss for epoch in second.curve]
    for name, weights in first.model.network.state_dict().items():
        assert torch.equal(weights, second.model.network.state_dict()[name]), name
    held_out = features["2013-03"].filter(pl.col("is_delayed").is_not_null())
    scores = first.model.predict(held_out)
    assert roc_auc(held_out["is_delayed"].cast(pl.Int8).to_numpy(), scores) > 0.65
    assert first.best_epoch == min(first.curve, key=lambda epoch: epoch.validation_loss).epoch


def test_the_artifact_round_trips_without_dagster(features, tmp_path):
    result = train(features["2013-02"], SMALL)
    folder = result.model.save(tmp_path / "model", {"training_data_version": "abc"})
    loaded = load_model(folder)
    np.testing.assert_array_equal(loaded.predict(features["2013-03"]), result.model.predict(features["2013-03"]))
    assert loaded.manifest["training_data_version"] == "abc"
    assert loaded.manifest["features"]["numeric"] == list(NUMERIC)


def test_unseen_categories_and_missing_values_are_scored(features):
    model = train(features["2013-02"], SMALL).model
    odd = (
        features["2013-03"]
        .head(5)
        .with_columns(
            pl.lit("ZZ").alias("carrier"), pl.lit("XXX").alias("dest"), pl.lit(None, pl.Float64).alias("temp")
        )
    )
    scores = model.predict(odd)
    assert scores.shape == (5,) and np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    assert model.preprocessor.categorical(odd)[:, CATEGORICAL.index("carrier")].tolist() == [0] * 5


def test_too_few_labelled_rows_are_refused(features):
    with pytest.raises(ValueError, match="cannot be split"):
        split_by_time(features["2013-02"].head(1), 0.1)
