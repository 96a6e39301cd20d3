"""Every declared dataset end to end, the way `mlplatform materialize` runs it: all of flights' 2013 and
employment's 2015-2018, trained, promoted and scored."""

import duckdb
import pytest

from mlplatform.cli import main

pytestmark = pytest.mark.integration

FLIGHTS_IN_2013 = 336_776
PEOPLE = 277_677


@pytest.fixture(scope="module")
def everything(tmp_path_factory, seeded_landing):
    import shutil

    root = tmp_path_factory.mktemp("everything")
    shutil.copytree(seeded_landing, root / "data" / "landing")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPLATFORM_DATA_DIR", str(root / "data"))
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        assert main(["materialize"]) == 0
        yield root / "data" / "warehouse.duckdb"


def _count(warehouse, query):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(query).fetchall()


@pytest.mark.parametrize(
    ("dataset", "source", "rows", "periods"),
    [("flights", "flights", FLIGHTS_IN_2013, 12), ("employment", "people", PEOPLE, 4)],
)
def test_every_real_row_is_loaded_and_accounted_for(everything, dataset, source, rows, periods):
    [(raw, clean, quarantined, loaded)] = _count(
        everything,
        f"SELECT (SELECT count(*) FROM {dataset}.raw_{source}), (SELECT count(*) FROM {dataset}.clean_{source}), "
        f"(SELECT count(*) FROM {dataset}.{source}_quarantine), "
        f"(SELECT count(DISTINCT period) FROM {dataset}.raw_{source})",
    )
    assert raw == rows and clean + quarantined == rows and loaded == periods


@pytest.mark.parametrize(("dataset", "source"), [("flights", "flights"), ("employment", "people")])
def test_features_cover_every_clean_row_each_period(everything, dataset, source):
    mismatched = _count(
        everything,
        f"SELECT c.period FROM (SELECT period, count(*) AS n FROM {dataset}.clean_{source} GROUP BY 1) c "
        f"FULL JOIN (SELECT period, count(*) AS n FROM {dataset}.features GROUP BY 1) f USING (period) "
        "WHERE c.n IS DISTINCT FROM f.n",
    )
    assert mismatched == []


def test_the_real_seasonal_drift_is_visible(everything):
    rates = dict(_count(everything, "SELECT month, avg(is_delayed::DOUBLE) FROM flights.features GROUP BY 1"))
    assert rates[7] > 0.28 and rates[10] < 0.16 and len(rates) == 12


def test_every_month_has_its_own_version_in_the_remote(everything):
    import dagster as dg

    from mlplatform.catalog import recorded_versions

    with dg.DagsterInstance.get() as instance:
        versions = recorded_versions(instance, "flights/clean_flights")
    assert sorted(version.partition for version in versions) == [f"2013-{m:02d}" for m in range(1, 13)]
    remote = everything.parent / "dvc-remote" / "files" / "md5"
    assert all((remote / v.md5[:2] / v.md5[2:]).exists() for v in versions)


@pytest.mark.parametrize(
    ("dataset", "window", "target", "least_auc"),
    [("flights", "2013-01..2013-06", "2013-07", 0.73), ("employment", "2015..2015", "2016", 0.88)],
)
def test_each_model_is_trained_on_its_window_and_promoted(everything, dataset, window, target, least_auc):
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        [record] = instance.fetch_materializations(dg.AssetKey([dataset, "training_set"]), limit=1).records
        [model] = instance.fetch_materializations(dg.AssetKey([dataset, "model"]), limit=1).records
    metadata = record.asset_materialization.metadata
    assert metadata["window"].value == window and metadata["target_period"].value == target
    assert model.asset_materialization.metadata["holdout_roc_auc"].value >= least_auc


@pytest.mark.parametrize(
    ("dataset", "model", "rows"), [("flights", "flights_delay", FLIGHTS_IN_2013), ("employment", "employment", PEOPLE)]
)
def test_every_row_is_scored_by_its_models_champion(everything, dataset, model, rows):
    [(scored, versions, champion)] = _count(
        everything,
        f"SELECT count(*), list(DISTINCT model_version), (SELECT version FROM model_promotions "
        f"WHERE model = '{model}' AND rolled_back_at IS NULL) FROM {dataset}.predictions",
    )
    assert scored == rows and versions == [champion]


@pytest.mark.parametrize(("dataset", "periods"), [("flights", 12), ("employment", 4)])
def test_the_periods_are_scored_in_one_run_each_with_its_own_version(everything, dataset, periods):
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey([dataset, "predictions"]), limit=100).records
    rows = dict(_count(everything, f"SELECT period, count(*) FROM {dataset}.predictions GROUP BY 1"))
    recorded = {record.partition_key: record.asset_materialization.metadata for record in records}
    assert {period: metadata["dagster/row_count"].value for period, metadata in recorded.items()} == rows
    assert len(rows) == periods and len({record.run_id for record in records}) == 1
    assert len({metadata["dvc/md5"].value for metadata in recorded.values()}) == periods
