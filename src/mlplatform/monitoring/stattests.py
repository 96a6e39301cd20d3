"""Two-sample test statistics and p-values as Evidently 0.7 gets them from scipy, without scipy.

Everything here takes plain numbers or numpy arrays (a sample as values with weights, or shares over a common
set of keys) and imports nothing but :mod:`math` and numpy, so :mod:`mlplatform.monitoring.drift` can run its tests
where scipy is not installed. Each function names the scipy call it reproduces; ``tests/test_stattests.py`` checks
them against scipy.

* :func:`ks_p_value`: ``scipy.stats.ks_2samp(method='auto')``: the exact lattice count up to 10,000 rows a
  side (Hodges, with Viehmann's complement), else the Kolmogorov distribution, evaluated exactly (Simard &
  L'Ecuyer's regions, Durbin's matrix) where scipy uses the Pelz-Good approximation.
* :func:`chisquare_p`, :func:`upper_regularised_gamma`: Evidently's ``chisquare`` through ``chi2.sf``.
* :func:`z_test_p`: Evidently's two-sided proportion z-test.
* :func:`jensenshannon`: ``scipy.spatial.distance.jensenshannon`` (natural logarithm).
* :func:`psi`: Evidently's population stability index with its zero filling.
* :func:`wasserstein`, :func:`ks_statistic`: ``scipy.stats.wasserstein_distance`` and the KS statistic of
  two weighted samples.
"""

from __future__ import annotations

import math

import numpy as np


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's PSI of two share vectors over the same keys or bins."""
    reference, current = _fill_zeroes(reference), _fill_zeroes(current)
    return float(np.sum((reference - current) * np.log(reference / current)))


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """An empty bin gets ``min(non-empty share) / 1e6``, or 0.0001 if that minimum is above 0.0001."""
    smallest = shares[shares != 0].min()
    return np.where(shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, shares)


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """``scipy.spatial.distance.jensenshannon(p, q)`` with natural logarithms."""
    middle = (p + q) / 2

    def relative_entropy(x: np.ndarray) -> float:
        positive = x > 0
        return float(np.sum(x[positive] * np.log(x[positive] / middle[positive])))

    return math.sqrt(max(relative_entropy(p) + relative_entropy(q), 0.0) / 2)


def chisquare_p(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's chisquare: expected = reference counts scaled to the current size; an unseen value gives 0."""
    expected = reference * current.sum() / reference.sum()
    if np.any((expected == 0) & (current > 0)):
        return 0.0
    statistic = float(np.sum((current - expected) ** 2 / expected))
    return upper_regularised_gamma((len(current) - 1) / 2, statistic / 2)


def z_test_p(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sided z-test for the proportion of the first value, as Evidently's ``z`` computes it."""
    if len(reference) == 1:
        return 1.0
    n1, n2 = reference.sum(), current.sum()
    p1, p2 = 1 - reference[0] / n1, 1 - current[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def cdf_gap(
    u_values: np.ndarray, u_weights: np.ndarray, v_values: np.ndarray, v_weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The merged support of two weighted samples and |F_u - F_v| at each of its points."""
    support = np.union1d(u_values, v_values)
    u_cdf, v_cdf = (
        np.cumsum(np.bincount(np.searchsorted(support, values), weights, len(support))) / weights.sum()
        for values, weights in ((u_values, u_weights), (v_values, v_weights))
    )
    return support, np.abs(u_cdf - v_cdf)


def wasserstein(u_values: np.ndarray, u_weights: np.ndarray, v_values: np.ndarray, v_weights: np.ndarray) -> float:
    """``scipy.stats.wasserstein_distance(u_values, v_values, u_weights, v_weights)``: the area between CDFs."""
    support, gap = cdf_gap(u_values, u_weights, v_values, v_weights)
    return float(np.sum(gap[:-1] * np.diff(support)))


def ks_statistic(u_values: np.ndarray, u_weights: np.ndarray, v_values: np.ndarray, v_weights: np.ndarray) -> float:
    """The two-sample KS statistic of two weighted samples: the largest gap between their CDFs."""
    return float(cdf_gap(u_values, u_weights, v_values, v_weights)[1].max())


def ks_p_value(n1: int, n2: int, statistic: float) -> float:
    """The two-sided p-value of ``scipy.stats.ks_2samp(method='auto')``."""
    if max(n1, n2) <= 10_000:
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        h = round(statistic * lcm)
        if h == 0:
            return 1.0
        p_value = _ks_square_sf(n1, h) if n1 == n2 else _ks_lattice_sf(max(n1, n2), min(n1, n2), g, h)
        if 0.0 <= p_value <= 1.0:
            return p_value
    en = n1 * n2 / (n1 + n2)
    return min(max(kolmogorov_sf(round(en), statistic), 0.0), 1.0)


def _ks_square_sf(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n): alternating sum of binomial ratios, Horner-style (Hodges)."""
    total = 0.0
    for k in range(n // h, -1, -1):
        term = 1.0
        for j in range(h):
            term = (n - k * h - j) * term / (n + k * h + j + 1)
        total = term * (1.0 - total)
    return 2 * total


def _ks_lattice_sf(m: int, n: int, g: int, h: int) -> float:
    """Share of the lattice paths (0,0)->(m,n), m >= n, that leave |x/m - y/n| < h/lcm (Hodges' inside
    method, counting the complement directly for precision: Viehmann 2021)."""
    mg, ng = m // g, n // g
    low, high = 0, min(-(-h // mg), n + 1)
    width = high - low
    paths = [1.0] * min(2 * high + 2, n + 1)
    paths[low:high] = [0.0] * (high - low)
    for i in range(1, m + 1):
        last_low, last_width = low, width
        low = min(max((ng * i - h) // mg + 1, 0), n)
        high = min(-(-(ng * i + h) // mg), n + 1)
        if high <= low:
            return 1.0
        value = 0.0 if low == 0 else 1.0
        for offset in range(high - low):
            j = offset + low
            value = (paths[offset + low - last_low] * i + value * j) / (i + j)
            paths[offset] = value
        width = high - low
        if last_width > width:
            paths[width:last_width] = [1.0] * (last_width - width)
    return paths[high - low - 1]


def kolmogorov_sf(n: int, x: float) -> float:
    """P(D_n >= x) of the one-sample two-sided KS statistic (Simard & L'Ecuyer's regions, as scipy's kstwo)."""
    t = n * x
    if x >= 1.0:
        return 0.0
    if t <= 0.5:
        return 1.0
    if t <= 1.0:  # Ruben & Gambino
        return 1.0 - math.exp(math.lgamma(n + 1) - n * math.log(n) + n * math.log(2 * t - 1))
    if t >= n - 1:
        return 2 * (1.0 - x) ** n
    if x >= 0.5 or (n <= 140 and t * x > 4.0) or (n > 140 and 2.2 <= t * x < 370):
        return 2 * _smirnov_sf(n, x)
    if n > 140 and t * x >= 370:
        return 0.0
    return 1.0 - _durbin_cdf(n, x)


def _smirnov_sf(n: int, x: float) -> float:
    """P(D+_n >= x), Birnbaum-Tingey's exact sum, in logarithms."""
    terms = []
    for j in range(math.floor(n * (1 - x)) + 1):
        rest = 1 - x - j / n
        if rest <= 0:
            continue
        log_binomial = math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
        terms.append(math.exp(log_binomial + (n - j) * math.log(rest) + (j - 1) * math.log(x + j / n)))
    return x * math.fsum(terms)


def _durbin_cdf(n: int, d: float) -> float:
    """P(D_n < d) by Durbin's matrix (Marsaglia, Tsang & Wang 2003): n!/n^n * (H^n)[k, k]."""
    k = math.ceil(n * d)
    h = k - n * d
    m = 2 * k - 1
    factorials = np.array([math.factorial(i) for i in range(m + 1)], dtype=float)
    rows, cols = np.indices((m, m))
    order = rows - cols + 1
    matrix = np.where(order >= 0, 1.0 / factorials[np.clip(order, 0, m)], 0.0)
    edge = (1.0 - h ** np.arange(1, m + 1)) / factorials[1:]
    matrix[:, 0] = edge
    matrix[-1, :] = edge[::-1]
    matrix[-1, 0] = (1 - 2 * h**m + max(0.0, 2 * h - 1) ** m) / factorials[m]
    power, power_exponent, square_exponent, remaining = np.eye(m), 0, 0, n
    while remaining:
        if remaining % 2:
            power, power_exponent = _rescaled(power @ matrix, power_exponent + square_exponent)
        matrix, square_exponent = _rescaled(matrix @ matrix, 2 * square_exponent)
        remaining //= 2
    log_p = math.log(power[k - 1, k - 1]) + power_exponent * math.log(2) + math.lgamma(n + 1) - n * math.log(n)
    return math.exp(log_p)


def _rescaled(matrix: np.ndarray, exponent: int) -> tuple[np.ndarray, int]:
    """The matrix divided by a power of two that keeps it near 1, and the exponent carried beside it."""
    shift = int(np.frexp(np.abs(matrix).max())[1])
    return np.ldexp(matrix, -shift), exponent + shift


def upper_regularised_gamma(a: float, x: float) -> float:
    """Q(a, x) = chi2.sf(2x, 2a): a series below x = a + 1, Lentz's continued fraction above."""
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = 0
        while abs(term) > abs(total) * 1e-17:
            n += 1
            term *= x / (a + n)
            total += term
        return max(1.0 - total * math.exp(log_prefactor), 0.0)
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    fraction = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        fraction *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return fraction * math.exp(log_prefactor)
