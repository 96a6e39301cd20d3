"""The scipy-free distribution functions of mlplatform.monitoring.stattests against scipy, across their regimes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import special, stats
from scipy.spatial import distance

from mlplatform.monitoring import stattests

rng = np.random.default_rng(11)


@pytest.mark.parametrize(
    ("n1", "n2"),
    [(300, 300), (400, 650), (7, 13), (500, 20_000), (12_000, 15_000), (60, 90_000)],
)
def test_ks_p_value_is_ks_2samp_auto(n1, n2):
    """Exact lattice counts (equal and unequal sizes) and the asymptotic Kolmogorov distribution."""
    reference = rng.normal(size=n1).round(2)
    current = rng.normal(0.1, size=n2).round(2)
    expected = stats.ks_2samp(reference, current)
    ones = (np.ones(n1), np.ones(n2))
    statistic = stattests.ks_statistic(reference, ones[0], current, ones[1])
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert stattests.ks_p_value(n1, n2, statistic) == pytest.approx(expected.pvalue, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize(("n", "x"), [(20, 0.02), (20, 0.04), (50, 0.3), (100, 0.05), (500, 0.08), (1000, 0.9)])
def test_kolmogorov_sf_is_kstwo(n, x):
    """Every region of Simard & L'Ecuyer's: Ruben-Gambino, Durbin's matrix, Smirnov's sum, the far tail."""
    assert stattests.kolmogorov_sf(n, x) == pytest.approx(stats.kstwo.sf(x, n), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("a", "x"), [(0.5, 0.1), (1.5, 3.0), (4.0, 2.0), (10.0, 25.0), (40.0, 39.0), (3.0, 0.0)])
def test_upper_regularised_gamma_is_gammaincc(a, x):
    assert stattests.upper_regularised_gamma(a, x) == pytest.approx(special.gammaincc(a, x), rel=1e-12, abs=1e-300)


def test_chisquare_and_z_are_scipys():
    reference, current = np.array([240.0, 180.0, 120.0, 60.0]), np.array([105.0, 105.0, 87.0, 53.0])
    expected = stats.chisquare(current, reference * current.sum() / reference.sum()).pvalue
    assert stattests.chisquare_p(reference, current) == pytest.approx(expected, rel=1e-10)
    assert stattests.chisquare_p(np.array([5.0, 5.0, 0.0]), np.array([3.0, 3.0, 1.0])) == 0.0
    reference, current = np.array([560.0, 240.0]), np.array([300.0, 200.0])
    p1, p2 = 240 / 800, 200 / 500
    pooled = (p1 * 800 + p2 * 500) / 1300
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 800 + 1 / 500))
    assert stattests.z_test_p(reference, current) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12)
    assert stattests.z_test_p(np.array([10.0]), np.array([4.0])) == 1.0


def test_jensenshannon_and_psi():
    p, q = np.array([0.1, 0.2, 0.3, 0.4, 0.0]), np.array([0.1, 0.2, 0.2, 0.4, 0.1])
    assert stattests.jensenshannon(p, q) == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    filled_p = np.where(p == 0, 0.0001, p)
    assert stattests.psi(p, q) == pytest.approx(np.sum((filled_p - q) * np.log(filled_p / q)), rel=1e-12)


def test_wasserstein_of_weighted_samples_is_scipys():
    u, v = rng.normal(size=50), rng.normal(0.5, 2, size=80)
    u_weights, v_weights = rng.integers(1, 9, size=50).astype(float), rng.integers(1, 9, size=80).astype(float)
    expected = stats.wasserstein_distance(u, v, u_weights, v_weights)
    assert stattests.wasserstein(u, u_weights, v, v_weights) == pytest.approx(expected, rel=1e-12)


def test_the_module_imports_neither_scipy_nor_dagster():
    code = (
        "import sys, mlplatform.monitoring.stattests; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'dagster'}))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
