"""Drift statistics against scipy (as Evidently 0.7 calls it), edge cases, and the saved-profile round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from mlplatform.monitoring.drift import compare, profile


@pytest.fixture
def db() -> duckdb.DuckDBPyConnection:
    with duckdb.connect() as connection:
        yield connection


def drift_of(db, reference: dict, current: dict, kinds: dict, drift_share: float = 0.5):
    """Profile ``reference``, compare ``current`` (both column -> values), return the report."""
    db.register("reference_frame", pd.DataFrame(reference))
    db.register("current_frame", pd.DataFrame(current))
    return compare(profile(db, "reference_frame", kinds), db, "current_frame", drift_share)


def column(report, name: str):
    return next(result for result in report.columns if result.column == name)


def counts_over_union(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = np.union1d(reference, current)
    return (np.array([np.sum(sample == key) for key in keys], dtype=float) for sample in (reference, current))


def evidently_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """evidently.legacy.calculations.stattests.psi with its get_binned_data, for numeric data."""
    if len(np.unique(reference)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        shares = [np.histogram(sample, bins)[0] / len(sample) for sample in (reference, current)]
    else:
        shares = [counts / counts.sum() for counts in counts_over_union(reference, current)]
    for share in shares:
        smallest = share[share != 0].min()
        np.place(share, share == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return float(np.sum((shares[0] - shares[1]) * np.log(shares[0] / shares[1])))


rng = np.random.default_rng(7)


@pytest.mark.parametrize(("reference_rows", "current_rows"), [(300, 300), (400, 650), (500, 20_000)])
def test_ks_p_value_is_scipys(db, reference_rows, current_rows):
    reference = rng.normal(size=reference_rows).round(2)
    current = rng.normal(0.15, size=current_rows).round(2)
    result = column(drift_of(db, {"x": reference}, {"x": current}, {"x": "numeric"}), "x")
    expected = stats.ks_2samp(reference, current).pvalue
    assert result.test == "ks"
    assert result.statistic == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert result.drifted == (expected <= 0.05)
    assert result.psi == pytest.approx(evidently_psi(reference, current), rel=1e-9)


def test_wasserstein_on_exact_value_counts_is_scipys(db):
    reference = rng.normal(10, 2, size=5000).round(1)
    current = rng.normal(10.3, 2, size=3000).round(1)
    result = column(drift_of(db, {"x": reference}, {"x": current}, {"x": "numeric"}), "x")
    expected = stats.wasserstein_distance(reference, current) / max(np.std(reference), 0.001)
    assert (result.test, result.error_bound) == ("wasserstein", 0.0)
    assert result.statistic == pytest.approx(expected, rel=1e-9)
    assert result.drifted == (expected >= 0.1)
    assert result.psi == pytest.approx(evidently_psi(reference, current), rel=1e-9)


def test_wasserstein_on_binned_continuous_values_is_within_its_bound(db):
    reference = rng.normal(size=30_000)
    current = np.concatenate([rng.normal(0.4, 1.5, size=20_000), [7.5, -8.0]])
    result = column(drift_of(db, {"x": reference}, {"x": current}, {"x": "numeric"}), "x")
    expected = stats.wasserstein_distance(reference, current) / np.std(reference)
    assert 0 < result.error_bound < 0.01
    assert abs(result.statistic - expected) <= result.error_bound
    assert result.psi == pytest.approx(evidently_psi(reference, current), rel=0.02)


def test_jensenshannon_counts_unseen_categories_as_evidently_does(db):
    reference = rng.choice(["AA", "B6", "DL", "UA"], size=4000, p=[0.1, 0.2, 0.3, 0.4])
    current = rng.choice(["AA", "B6", "DL", "UA", "ZZ"], size=2500, p=[0.1, 0.2, 0.2, 0.4, 0.1])
    result = column(drift_of(db, {"c": reference}, {"c": current}, {"c": "categorical"}), "c")
    reference_counts, current_counts = counts_over_union(reference, current)
    expected = distance.jensenshannon(reference_counts / 4000, current_counts / 2500)
    assert result.test == "jensenshannon"
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert (result.unseen_categories, result.unseen_rows) == (["ZZ"], int(np.sum(current == "ZZ")))
    assert result.psi == pytest.approx(evidently_psi(reference, current), rel=1e-12)


def test_chisquare_is_scipys_on_reference_counts_scaled_to_the_current_size(db):
    reference = rng.choice([1, 2, 3, 4], size=600, p=[0.4, 0.3, 0.2, 0.1])
    current = rng.choice([1, 2, 3, 4], size=350, p=[0.3, 0.3, 0.25, 0.15])
    result = column(drift_of(db, {"hour": reference}, {"hour": current}, {"hour": "categorical"}), "hour")
    reference_counts, current_counts = counts_over_union(reference, current)
    expected = stats.chisquare(current_counts, reference_counts * 350 / 600).pvalue
    assert result.test == "chisquare"
    assert result.statistic == pytest.approx(expected, rel=1e-10)
    assert result.drifted == (expected < 0.05)


def test_an_unseen_category_in_a_small_reference_gives_chisquare_p_zero(db):
    result = column(drift_of(db, {"c": ["a", "b", "c"] * 100}, {"c": ["a", "b", "d"] * 50}, {"c": "categorical"}), "c")
    assert (result.test, result.statistic, result.drifted, result.unseen_categories) == ("chisquare", 0.0, True, ["d"])


def test_z_test_on_binary_numeric_columns(db):
    reference = (rng.random(800) < 0.3).astype(float)
    current = (rng.random(500) < 0.4).astype(float)
    result = column(drift_of(db, {"x": reference}, {"x": current}, {"x": "numeric"}), "x")
    p1, p2 = reference.mean(), current.mean()
    pooled = (p1 * 800 + p2 * 500) / 1300
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 800 + 1 / 500))
    assert result.test == "z"
    assert result.statistic == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), rel=1e-9)


def test_few_numeric_values_over_a_large_reference_use_jensenshannon(db):
    reference = rng.choice([0.0, 1.0, 2.0], size=3000)
    current = rng.choice([0.0, 1.0, 2.0], size=2000, p=[0.5, 0.3, 0.2])
    result = column(drift_of(db, {"x": reference}, {"x": current}, {"x": "numeric"}), "x")
    reference_counts, current_counts = counts_over_union(reference, current)
    assert result.test == "jensenshannon"
    assert result.statistic == pytest.approx(distance.jensenshannon(reference_counts, current_counts), rel=1e-12)


def test_missing_values_and_infinities_are_counted_and_left_out_of_the_test(db):
    values = rng.normal(size=2000).round(2)
    noisy = np.concatenate([values, [np.nan] * 500, [np.inf, -np.inf]])
    clean_report = drift_of(db, {"x": values}, {"x": values[:1500] + 0.1}, {"x": "numeric"})
    noisy_report = drift_of(
        db, {"x": noisy}, {"x": np.concatenate([values[:1500] + 0.1, [np.nan] * 1500])}, {"x": "numeric"}
    )
    clean, noisy_result = column(clean_report, "x"), column(noisy_report, "x")
    assert noisy_result.statistic == pytest.approx(clean.statistic, rel=1e-12)
    assert noisy_result.reference_null_share == pytest.approx(500 / 2502)
    assert noisy_result.current_null_share == pytest.approx(0.5)
    assert (noisy_result.reference_infinite, noisy_result.current_infinite) == (2, 0)


def test_values_sharing_a_grid_cell_are_still_counted_exactly(db):
    """Two values closer than a grid cell: counted by value (few rows, or an approximate distinct count within
    the cap); a continuous column squeezed into a few cells by an outlier stays pooled."""
    few = rng.choice([0.0, 1e-9, 3.0, 1000.0], size=300)
    many = rng.choice([0.0, 1e-9, 3.0, 1000.0], size=12_000)
    squeezed = np.r_[rng.normal(size=11_999), 1e6]
    db.register("reference_frame", pd.DataFrame({"many": many, "squeezed": squeezed}))
    db.register("small_frame", pd.DataFrame({"few": few}))
    saved = profile(db, "reference_frame", {"many": "numeric", "squeezed": "numeric"})["columns"]
    small = profile(db, "small_frame", {"few": "numeric"})["columns"]["few"]
    assert small["values"] == saved["many"]["values"] == [0.0, 1e-9, 3.0, 1000.0]
    assert small["counts"] == [int(np.sum(few == value)) for value in small["values"]]
    assert "bins" in saved["squeezed"] and saved["squeezed"]["std"] == pytest.approx(np.std(squeezed), rel=1e-9)


def test_current_values_far_outside_the_reference_range_are_pooled_at_the_ends(db):
    reference = rng.normal(size=30_000)
    finite = np.r_[rng.normal(0.2, size=20_000), [40.0, -55.0, 1e9]]
    current = np.r_[finite, [np.inf, np.nan]]
    result = column(drift_of(db, {"x": reference}, {"x": current}, {"x": "numeric"}), "x")
    expected = stats.wasserstein_distance(reference, finite) / np.std(reference)
    assert (result.current_infinite, result.current_null_share) == (1, pytest.approx(1 / len(current)))
    assert abs(result.statistic - expected) <= result.error_bound < 0.01


def test_edge_cases_give_a_status_not_an_error(db):
    db.execute(
        "CREATE TABLE ref AS SELECT i::DOUBLE AS x, 7 AS constant, NULL::DOUBLE AS empty, 'a' AS c FROM range(50) t(i)"
    )
    db.execute("CREATE TABLE cur AS SELECT i::DOUBLE AS empty, NULL::DOUBLE AS x, 7 AS constant FROM range(40) t(i)")
    kinds = {"x": "numeric", "constant": "numeric", "empty": "numeric", "c": "categorical"}
    report = compare(profile(db, "ref", kinds), db, "cur")
    statuses = {result.column: result.status for result in report.columns}
    assert statuses == {"x": "empty_current", "constant": "constant", "empty": "empty_reference", "c": "missing_column"}
    constant = column(report, "constant")
    assert (constant.test, constant.statistic, constant.drifted) == ("z", 1.0, False)
    assert [result.column for result in report.tested] == ["constant"]


def test_dataset_drift_is_the_share_of_drifted_columns(db):
    reference = {name: rng.normal(size=3000).round(2) for name in "abcd"}
    current = {name: rng.normal(1.0 if name in "ab" else 0.0, size=3000).round(2) for name in "abcd"}
    kinds = dict.fromkeys("abcd", "numeric")
    report = drift_of(db, reference, current, kinds)
    assert report.drifted_columns == ["a", "b"]
    assert (report.drifted_share, report.dataset_drift) == (0.5, True)
    assert not drift_of(db, reference, current, kinds, drift_share=0.6).dataset_drift


def test_planted_drift_is_found_and_a_same_distribution_sample_is_not(db):
    carriers = ["AA", "B6", "DL", "EV", "UA"]
    reference = {"distance": rng.gamma(2, 500, 20_000).round(), "carrier": rng.choice(carriers, 20_000)}
    same = {"distance": rng.gamma(2, 500, 10_000).round(), "carrier": rng.choice(carriers, 10_000)}
    drifted = {
        "distance": rng.gamma(2, 650, 10_000).round(),
        "carrier": rng.choice(carriers, 10_000, p=[0.6] + [0.1] * 4),
    }
    kinds = {"distance": "numeric", "carrier": "categorical"}
    assert drift_of(db, reference, same, kinds).drifted_columns == []
    assert drift_of(db, reference, drifted, kinds).drifted_columns == ["distance", "carrier"]


def test_a_profile_read_back_from_json_gives_the_same_report(db):
    db.execute(
        "CREATE TABLE ref AS SELECT random() * 100 AS x, (i % 7)::INT AS d, 'c' || (i % 9) AS c FROM range(20000) t(i)"
    )
    db.execute(
        "CREATE TABLE cur AS SELECT random() * 120 AS x, (i % 5)::INT AS d, 'c' || (i % 11) AS c FROM range(9000) t(i)"
    )
    kinds = {"x": "numeric", "d": "numeric", "c": "categorical"}
    saved = profile(db, "SELECT * FROM ref", kinds)
    assert "bins" in saved["columns"]["x"] and "values" in saved["columns"]["d"]
    restored = json.loads(json.dumps(saved))
    assert compare(restored, db, "SELECT * FROM cur").to_dict() == compare(saved, db, "SELECT * FROM cur").to_dict()


def test_the_module_imports_neither_scipy_nor_dagster():
    code = (
        "import sys, mlplatform.monitoring.drift; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'dagster'}))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
