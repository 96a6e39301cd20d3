"""All of 2013, end to end, the way `mlplatform materialize` runs it."""

import duckdb
import pytest

from mlplatform.cli import main

pytestmark = pytest.mark.integration

FLIGHTS_IN_2013 = 336_776


@pytest.fixture(scope="module")
def full_year(tmp_path_factory, seeded_landing):
    import shutil

    root = tmp_path_factory.mktemp("full_year")
    shutil.copytree(seeded_landing, root / "data" / "landing")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPLATFORM_DATA_DIR", str(root / "data"))
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        assert main(["materialize"]) == 0
        yield root / "data" / "warehouse.duckdb"


def _count(warehouse, query):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(query).fetchall()


def test_every_real_flight_is_loaded_and_accounted_for(full_year):
    [(raw, clean, quarantined, months)] = _count(
        full_year,
        "SELECT (SELECT count(*) FROM raw_flights), (SELECT count(*) FROM clean_flights), "
        "(SELECT count(*) FROM flights_quarantine), (SELECT count(DISTINCT partition_month) FROM raw_flights)",
    )
    assert raw == FLIGHTS_IN_2013 and clean + quarantined == FLIGHTS_IN_2013 and months == 12


def test_features_cover_every_clean_flight_each_month(full_year):
    mismatched = _count(
        full_year,
        "SELECT c.partition_month FROM (SELECT partition_month, count(*) AS n FROM clean_flights GROUP BY 1) c "
        "JOIN (SELECT partition_month, count(*) AS n FROM flight_features GROUP BY 1) f USING (partition_month) "
        "WHERE c.n <> f.n",
    )
    assert mismatched == []


def test_the_real_seasonal_drift_is_visible(full_year):
    rates = dict(_count(full_year, "SELECT month, avg(is_delayed::DOUBLE) FROM flight_features GROUP BY 1"))
    assert rates[7] > 0.28 and rates[10] < 0.16 and len(rates) == 12


def test_every_month_has_its_own_version_in_the_remote(full_year):
    import dagster as dg

    from mlplatform.catalog import recorded_versions

    with dg.DagsterInstance.get() as instance:
        versions = recorded_versions(instance, "clean_flights")
    assert sorted(version.partition for version in versions) == [f"2013-{m:02d}" for m in range(1, 13)]
    remote = full_year.parent / "dvc-remote" / "files" / "md5"
    assert all((remote / v.md5[:2] / v.md5[2:]).exists() for v in versions)


def test_the_delay_model_is_trained_on_january_to_june_and_scored_on_july(full_year):
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        [record] = instance.fetch_materializations(dg.AssetKey("training_set"), limit=1).records
        [model] = instance.fetch_materializations(dg.AssetKey("delay_model"), limit=1).records
    window = record.asset_materialization.metadata
    assert window["window"].value == "2013-01..2013-06" and window["target_month"].value == "2013-07"
    assert model.asset_materialization.metadata["holdout_roc_auc"].value > 0.65


def test_every_flight_is_scored_by_the_promoted_champion(full_year):
    [(rows, versions, champion)] = _count(
        full_year,
        "SELECT count(*), list(DISTINCT model_version), "
        "(SELECT version FROM model_promotions WHERE rolled_back_at IS NULL) FROM flight_delay_predictions",
    )
    assert rows == FLIGHTS_IN_2013 and versions == [champion]
