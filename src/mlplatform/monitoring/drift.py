"""Column drift between a saved reference profile and current data, with Evidently 0.7's default tests.

A reference *profile* is computed once, in DuckDB, when a model version is trained and saved beside it as
JSON, so monitoring never rescans the training data. :func:`compare` aggregates the current data in DuckDB
against it and runs, per column, what Evidently's ``DataDriftPreset`` picks by default
(``evidently.legacy.calculations.stattests.registry._get_default_stattest``), on the values left after
dropping nulls, NaN and infinities, where ``n_values`` counts the distinct values of reference and current
together:

===================  ========================================  =========================================
reference rows       numeric, ``n_values > 5``                 categorical, or numeric ``n_values <= 5``
===================  ========================================  =========================================
<= 1000              ``ks``: two-sample KS p-value <= 0.05     ``chisquare`` (``n_values > 2``) or ``z``
                                                               (proportions) p-value < 0.05
> 1000               ``wasserstein``: W1 / max(std_ref, 0.001) ``jensenshannon`` (natural log) >= 0.1
                     >= 0.1
===================  ========================================  =========================================

The dataset drifts when the share of drifted columns among the tested ones is >= ``drift_share``.
PSI is reported beside every column as Evidently's ``psi`` computes it (its docstring speaks of reference
quantiles, its code does not): a numeric column with more than 20 reference values gets Sturges bins over the
min..max of both samples together; any other column is keyed by the union of its values. An empty bin gets
``min(non-empty share) / 1e6``, or 0.0001 if that minimum is above 0.0001.

Cost. Each call reads every profiled column of the relation once: one ``GROUP BY`` per column, all under one
``UNION ALL`` query, so DuckDB reads only that column for it and runs the branches on all its threads (for a
stored table that is one pass over its columns; a relation given as a query is evaluated once per column).
Counts, nulls, NaN and infinities, min, max and the standard deviation all come from those groups. Before
them, both calls ask for each numeric column's min and max (the grid of :func:`profile`; for :func:`compare`,
whether any current value lies so far out that the cells need clamping), which a stored table answers from its
statistics without a scan. Only a column holding NaN or infinities, or one whose cells pool a few values (see
:func:`_resolve_values`), is read again.

Exactness. A numeric column with at most :data:`DISTINCT_CAP` distinct values is kept as exact value counts
(a reference of <= 1000 rows always is, so KS, chi-square and z are exact: the counts are the raw values,
losslessly). Every sample is first summed per cell (count, sum, min, max) of a 16,384-cell grid over the
reference's min..max, continued as wide again on either side; a column whose occupied cells each hold one
value (min == max) and number at most the cap is exact as it stands, and one whose cells pool values is
counted again by value when it may still be within the cap. Above the cap the cells stay, and the reference's
are merged into at most 2,000 near equal-count bins. A cell's or bin's mass is placed at its mean. That moves
W1 by at most ``sum(share * (max - min))`` over the pooled cells of both samples, and the KS statistic by at
most the largest pooled share; mass outside the other sample's range does not count (a flat CDF there makes
its mean enough). ``error_bound`` reports that bound, normed like the statistic, and is 0 when both samples
are exact. For PSI a pooled cell is spread evenly over its min..max (Sturges bins) or counts as one value
(keyed columns). The tests' statistics and p-values come from :mod:`mlplatform.monitoring.stattests`, which needs no
scipy.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import duckdb
import numpy as np

from mlplatform.data.sql import identifier
from mlplatform.monitoring import stattests

Kind = Literal["numeric", "categorical"]
PROFILE_VERSION = 1
DISTINCT_CAP = 5000
GRID_CELLS = 16_384
REFERENCE_BINS = 2000
SMALL_REFERENCE_ROWS = 1000
FEW_VALUES = 5
PSI_KEYED_VALUES = 20


@dataclass
class ColumnDrift:
    column: str
    kind: str
    status: str  # ok, constant, empty_reference, empty_current or missing_column
    test: str | None = None
    statistic: float | None = None
    threshold: float | None = None
    drifted: bool = False
    psi: float | None = None
    error_bound: float = 0.0
    reference_null_share: float = 0.0
    current_null_share: float = 0.0
    reference_infinite: int = 0
    current_infinite: int = 0
    unseen_categories: list[str] = field(default_factory=list)
    unseen_rows: int = 0


@dataclass
class DriftReport:
    columns: list[ColumnDrift]
    drift_share: float

    @property
    def tested(self) -> list[ColumnDrift]:
        return [column for column in self.columns if column.test is not None]

    @property
    def drifted_share(self) -> float:
        return sum(column.drifted for column in self.tested) / len(self.tested) if self.tested else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.tested) and self.drifted_share >= self.drift_share

    @property
    def drifted_columns(self) -> list[str]:
        return [column.column for column in self.columns if column.drifted]

    def to_rows(self) -> list[dict[str, Any]]:
        return [asdict(column) for column in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drifted_share": self.drifted_share,
            "drifted_columns": self.drifted_columns,
            "columns": self.to_rows(),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> DriftReport:
        """A report read back from :meth:`to_dict` (a sensor needs no data to decide from it)."""
        return cls([ColumnDrift(**row) for row in document["columns"]], document["drift_share"])


# --- Aggregation in DuckDB ------------------------------------------------------------------------------

# Column types whose min() and max() DuckDB can answer from a stored table's statistics, unchanged by a cast.
_PLAIN_NUMBERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "FLOAT", "DOUBLE"}


def profile(con: duckdb.DuckDBPyConnection, relation_sql: str, columns: dict[str, Kind]) -> dict[str, Any]:
    """The JSON-serialisable reference statistics of ``columns`` (name -> kind) of a query or table."""
    relation = _relation(relation_sql)
    numeric = [name for name, kind in columns.items() if kind == "numeric"]
    grids = _finite_ranges(con, relation, numeric, _column_types(con, relation))
    stats = _column_stats(con, relation, columns, grids, reference=True, outliers=set())
    return {"version": PROFILE_VERSION, "columns": {name: _to_profile(stats[name]) for name in columns}}


def compare(
    reference: dict[str, Any], con: duckdb.DuckDBPyConnection, current_sql: str, drift_share: float = 0.5
) -> DriftReport:
    """Test each profiled column of the current query or table against the reference profile."""
    relation = _relation(current_sql)
    present = _column_types(con, relation)
    profiled = reference["columns"]
    kinds = {name: column["kind"] for name, column in profiled.items() if name in present}
    grids = {name: profiled[name].get("grid") for name, kind in kinds.items() if kind == "numeric"}
    ranges = _finite_ranges(con, relation, list(grids), present)
    outliers = {name for name, grid in grids.items() if grid and ranges[name] and _beyond(ranges[name], grid)}
    current = _column_stats(con, relation, kinds, grids, reference=False, outliers=outliers) if kinds else {}
    results = [
        _column_drift(name, profiled[name], current[name])
        if name in current
        else ColumnDrift(name, profiled[name]["kind"], "missing_column")
        for name in profiled
    ]
    return DriftReport(results, drift_share)


def _relation(sql: str) -> str:
    return f"(FROM {identifier(sql)})" if re.fullmatch(r"\w+", sql) else f"({sql})"


def _as_double(name: str) -> str:
    return f"CAST({identifier(name)} AS DOUBLE)"


def _column_types(con, relation: str) -> dict[str, str]:
    return {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}


def _finite_ranges(con, relation: str, names: list[str], types: dict[str, str]) -> dict[str, dict | None]:
    """Each numeric column's finite min..max (None when it has no finite value): a stored table answers the
    plain min() and max() from its statistics; only a column holding NaN or an infinity needs a filtered scan."""
    if not names:
        return {}
    plain = [identifier(name) if types.get(name) in _PLAIN_NUMBERS else _as_double(name) for name in names]
    row = con.execute(f"SELECT {', '.join(f'min({v}), max({v})' for v in plain)} FROM {relation}").fetchone()
    ranges: dict[str, dict | None] = {}
    for index, name in enumerate(names):
        low, high = row[2 * index], row[2 * index + 1]
        finite = low is not None and math.isfinite(float(low)) and math.isfinite(float(high))
        ranges[name] = {"lo": float(low), "hi": float(high)} if finite else None
    unsure = [name for index, name in enumerate(names) if row[2 * index] is not None and ranges[name] is None]
    if unsure:
        selects = ", ".join(
            f"min({v}) FILTER (isfinite({v})), max({v}) FILTER (isfinite({v}))" for v in map(_as_double, unsure)
        )
        row = con.execute(f"SELECT {selects} FROM {relation}").fetchone()
        for index, name in enumerate(unsure):
            low, high = row[2 * index], row[2 * index + 1]
            ranges[name] = None if low is None else {"lo": float(low), "hi": float(high)}
    return ranges


def _width(grid: dict[str, float]) -> float:
    return grid["hi"] - grid["lo"] if grid["hi"] > grid["lo"] else max(abs(grid["lo"]), 1.0)


def _beyond(values: dict[str, float], grid: dict[str, float]) -> bool:
    """Whether values reach past the grid continued as wide again on either side."""
    return values["lo"] < grid["lo"] - _width(grid) or values["hi"] > grid["hi"] + _width(grid)


def _column_stats(
    con, relation: str, kinds: dict[str, Kind], grids: dict[str, dict | None], reference: bool, outliers: set[str]
) -> dict[str, dict]:
    """Counts, range and distribution of each column, each column read once: one GROUP BY per column under
    UNION ALL (DuckDB reads only that column of the relation for it, and runs the branches on all its threads).

    A numeric column is grouped by its cell of ``grids[name]`` (the reference's range), a reference's cells
    also summing their squared distance to its minimum for the standard deviation; see :func:`_cell_sql`. A
    column whose cells each hold a single value is exact; :func:`_resolve_values` sees to the others.
    """
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    stats = _numeric_stats(con, relation, numeric, grids, reference, outliers) if numeric else {}
    categorical = [name for name, kind in kinds.items() if kind == "categorical"]
    stats |= _categorical_stats(con, relation, categorical) if categorical else {}
    _resolve_values(con, relation, stats)
    if reference:
        for column in stats.values():
            if column["kind"] == "numeric" and "grid" in column:
                column["std"] = _std(column)
                column.pop("squares", None)
    return {name: stats[name] for name in kinds}


def _cell_sql(value: str, index: int, outliers: bool) -> str:
    """A value's cell, ``floor((value - lo) / width * GRID_CELLS)`` as DOUBLE, so that NULL, NaN and the
    infinities key themselves. Cells are only a partition (each keeps its own min..max), so the reference's
    maximum may take cell GRID_CELLS to itself. Where the current data reach past the grid continued as wide
    again on either side (``outliers``), one more cell each side takes everything further out, which keeps the
    number of groups bounded (clamping costs time on every row, so it is done only there)."""
    cell = f"floor(({value} - $lo{index}) * $scale{index})"
    if not outliers:
        return cell
    clamped = f"least(greatest({cell}, {-GRID_CELLS - 1}), {2 * GRID_CELLS})"
    return f"CASE WHEN isfinite({value}) THEN {clamped} ELSE {value} END"


def _numeric_stats(con, relation: str, names: list[str], grids: dict, reference: bool, outliers: set[str]):
    branches, parameters = [], {}
    for index, name in enumerate(names):
        grid = grids.get(name) or {"lo": 0.0, "hi": 1.0}  # no finite reference value: only counts matter
        parameters |= {f"lo{index}": grid["lo"], f"scale{index}": GRID_CELLS / _width(grid)}
        value = _as_double(name)
        squares = f", sum(({value} - $lo{index}) * ({value} - $lo{index})) AS squares" if reference else ""
        branches.append(
            f"SELECT {index} AS s, {_cell_sql(value, index, name in outliers)} AS k, count(*)::DOUBLE AS n, "
            f"sum({value}) AS total, min({value}) AS low, max({value}) AS high{squares} FROM {relation} GROUP BY k"
        )
    result = con.execute(" UNION ALL ".join(branches), parameters).fetchnumpy()
    # NULL keys (rows with NULL) read as NaN, which is missing too.
    result = {key: np.ma.filled(array.astype(float), np.nan) for key, array in result.items()}
    order = np.lexsort((result["k"], result["s"]))
    result = {key: array[order] for key, array in result.items()}
    bounds = np.searchsorted(result["s"], np.arange(len(names) + 1))
    stats = {}
    for index, name in enumerate(names):
        part = {key: array[bounds[index] : bounds[index + 1]] for key, array in result.items()}
        stats[name] = _numeric_column(part, grids.get(name))
    return stats


def _numeric_column(part: dict[str, np.ndarray], grid: dict | None) -> dict[str, Any]:
    keys, counts = part["k"], part["n"]
    finite = np.isfinite(keys)
    column = {
        "kind": "numeric",
        "rows": int(counts.sum()),
        "missing": int(counts[np.isnan(keys)].sum()),
        "infinite": int(counts[np.isinf(keys)].sum()),
    }
    if grid is None or not finite.any():
        return column
    cells = {"count": counts[finite], "sum": part["total"][finite], "min": part["low"][finite]}
    cells["max"] = part["high"][finite]
    column |= {"min": float(cells["min"].min()), "max": float(cells["max"].max()), "std": None, "grid": grid}
    if "squares" in part:
        column["squares"] = float(part["squares"][finite].sum())
    if np.array_equal(cells["min"], cells["max"]) and len(cells["count"]) <= DISTINCT_CAP:
        column |= {"distinct": len(cells["count"]), "values": cells["min"], "counts": cells["count"]}
    else:
        column["cells"] = cells
    return column


def _categorical_stats(con, relation: str, names: list[str]) -> dict[str, dict]:
    """Each categorical column's value counts (compared as text, whatever the column's type)."""
    branches = [
        f"SELECT {index} AS s, {identifier(name)} AS c{index}, count(*) AS n FROM {relation} GROUP BY ALL"
        for index, name in enumerate(names)
    ]
    cursor = con.execute(" UNION ALL BY NAME ".join(branches))
    position = {column[0]: index for index, column in enumerate(cursor.description)}
    counts: list[dict[str, int]] = [{} for _ in names]
    missing, rows = [0] * len(names), [0] * len(names)
    for row in cursor.fetchall():
        index, count = row[position["s"]], row[position["n"]]
        key = row[position[f"c{index}"]]
        rows[index] += count
        if key is None:
            missing[index] += count
        else:
            counts[index][str(key)] = counts[index].get(str(key), 0) + count
    stats = {}
    for index, name in enumerate(names):
        categories = sorted(counts[index].items())
        stats[name] = {"kind": "categorical", "rows": rows[index], "missing": missing[index]}
        stats[name] |= {"categories": [key for key, _ in categories], "counts": [count for _, count in categories]}
    return stats


def _resolve_values(con, relation: str, stats: dict[str, dict]) -> None:
    """Exact value counts, one more GROUP BY, for the columns whose cells pool values (min < max) while they
    may still have at most DISTINCT_CAP distinct values: certainly so when the single-valued cells and the
    rows of the pooling ones are few enough, else when DuckDB's approx_count_distinct says so (one more scan).
    A column with more occupied cells than the cap has more values than that, and stays pooled."""
    unsure = [
        name for name, column in stats.items() if "cells" in column and len(column["cells"]["count"]) <= DISTINCT_CAP
    ]
    if not unsure:
        return
    certain, estimate = [], []
    for name in unsure:
        cells = stats[name]["cells"]
        single = cells["min"] == cells["max"]
        (certain if single.sum() + cells["count"][~single].sum() <= DISTINCT_CAP else estimate).append(name)
    if estimate:
        selects = ", ".join(f"approx_count_distinct({v}) FILTER (isfinite({v}))" for v in map(_as_double, estimate))
        distinct = con.execute(f"SELECT {selects} FROM {relation}").fetchone()
        certain += [name for name, count in zip(estimate, distinct, strict=True) if count <= DISTINCT_CAP]
    if not certain:
        return
    branches = [
        f"SELECT {index} AS s, {_as_double(name)} AS k, count(*)::DOUBLE AS n FROM {relation} "
        f"WHERE isfinite({_as_double(name)}) GROUP BY k"
        for index, name in enumerate(certain)
    ]
    result = con.execute(" UNION ALL ".join(branches)).fetchnumpy()
    order = np.lexsort((result["k"], result["s"]))
    s, k, n = (np.asarray(result[key])[order] for key in ("s", "k", "n"))
    for index, name in enumerate(certain):
        part = s == index
        column = stats[name]
        del column["cells"]
        column |= {"distinct": int(part.sum()), "values": k[part], "counts": n[part]}


def _std(column: dict[str, Any]) -> float:
    """The population standard deviation: two passes over exact value counts, else from the cells' sums of
    squared distances to the minimum (their deviations from it, rather than raw squares, keep it accurate)."""
    if "values" in column:
        values, counts = column["values"], column["counts"]
        mean = np.sum(values * counts) / counts.sum()
        return float(math.sqrt(np.sum(counts * (values - mean) ** 2) / counts.sum()))
    cells = column["cells"]
    total = cells["count"].sum()
    offset = np.sum(cells["sum"] - cells["count"] * column["grid"]["lo"]) / total
    return float(math.sqrt(max(column["squares"] / total - offset**2, 0.0)))


def _to_profile(column: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of a reference column: numeric value counts and cells become lists and merged bins."""
    document = dict(column)
    if "values" in column:
        document |= {"values": column["values"].tolist(), "counts": column["counts"].astype(int).tolist()}
    if "cells" in column:
        document["bins"] = _merge_cells(document.pop("cells"))
    return document


def _merge_cells(cells: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Adjacent cells merged into at most REFERENCE_BINS bins of near equal count (a heavy cell stays alone)."""
    counts = cells["count"]
    before = np.cumsum(counts) - counts
    bin_of_cell = np.floor(before * REFERENCE_BINS / counts.sum()).astype(int)
    starts = np.flatnonzero(np.r_[True, np.diff(bin_of_cell) > 0])
    count = np.add.reduceat(counts, starts)
    return {
        "count": count.astype(int).tolist(),
        "mean": (np.add.reduceat(cells["sum"], starts) / count).tolist(),
        "min": np.minimum.reduceat(cells["min"], starts).tolist(),
        "max": np.maximum.reduceat(cells["max"], starts).tolist(),
    }


# --- Per-column tests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Atoms:
    """A numeric sample as masses at positions; ``low < high`` marks a cell whose values were pooled."""

    positions: np.ndarray
    counts: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, column: dict[str, Any]) -> _Atoms:
        if "values" in column:
            values = np.asarray(column["values"], dtype=float)
            return cls(values, np.asarray(column["counts"], dtype=float), values, values)
        pooled = column.get("bins") or column["cells"]
        count = np.asarray(pooled["count"], dtype=float)
        mean = np.asarray(pooled["mean"]) if "mean" in pooled else np.asarray(pooled["sum"]) / count
        return cls(mean, count, np.asarray(pooled["min"], dtype=float), np.asarray(pooled["max"], dtype=float))

    @property
    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        return self.positions, self.counts

    @property
    def exact(self) -> bool:
        return bool(np.all(self.low == self.high))

    def pooled_shares(self, support_low: float, support_high: float) -> np.ndarray:
        """Shares of pooled cells inside the other sample's range (outside it, pooling changes nothing)."""
        pooled = (self.high > self.low) & (self.high >= support_low) & (self.low <= support_high)
        return np.where(pooled, self.counts / self.counts.sum(), 0.0)

    def mass_below(self, edges: np.ndarray, inclusive: bool = False) -> np.ndarray:
        """Mass below (or at) each edge, a pooled cell spread evenly over its min..max."""
        point = self.low == self.high
        order = np.argsort(self.positions[point])
        cumulative = np.r_[0.0, np.cumsum(self.counts[point][order])]
        side = "right" if inclusive else "left"
        mass = cumulative[np.searchsorted(self.positions[point][order], edges, side=side)]
        low, high, counts = self.low[~point, None], self.high[~point, None], self.counts[~point, None]
        return mass + (counts * np.clip((edges[None, :] - low) / (high - low), 0.0, 1.0)).sum(axis=0)


def _column_drift(name: str, reference: dict[str, Any], current: dict[str, Any]) -> ColumnDrift:
    kind = reference["kind"]
    result = ColumnDrift(
        name,
        kind,
        "ok",
        reference_null_share=_share(reference["missing"], reference["rows"]),
        current_null_share=_share(current["missing"], current["rows"]),
        reference_infinite=reference.get("infinite", 0),
        current_infinite=current.get("infinite", 0),
    )
    if not _usable_rows(reference) or not _usable_rows(current):
        result.status = "empty_reference" if not _usable_rows(reference) else "empty_current"
        return result
    reference_keys, reference_counts = _keyed(reference)
    current_keys, current_counts = _keyed(current)
    if reference_keys is not None and len(reference_keys) == 1:
        result.status = "constant"
    if kind == "categorical":
        unseen = sorted(set(current_keys) - set(reference_keys))
        result.unseen_categories = unseen
        result.unseen_rows = int(
            sum(count for key, count in zip(current_keys, current_counts, strict=True) if key in unseen)
        )
    if kind == "numeric" and not _few_values(reference_keys, current_keys):
        _numeric_test(result, reference, current)
    else:
        _keyed_test(result, reference_keys, reference_counts, current_keys, current_counts)
    result.drifted = bool(result.drifted)
    return result


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _usable_rows(column: dict[str, Any]) -> int:
    return column["rows"] - column["missing"] - column.get("infinite", 0)


def _keyed(column: dict[str, Any]) -> tuple[list | None, list[float]]:
    """The column's values and counts when they are exact, else (None, [])."""
    if "categories" in column:
        return list(column["categories"]), [float(count) for count in column["counts"]]
    if "values" in column:
        return [float(value) for value in column["values"]], [float(count) for count in column["counts"]]
    return None, []


def _few_values(reference_keys: list | None, current_keys: list | None) -> bool:
    return (
        reference_keys is not None
        and current_keys is not None
        and len(set(reference_keys) | set(current_keys)) <= FEW_VALUES
    )


def _keyed_test(result: ColumnDrift, reference_keys, reference_counts, current_keys, current_counts) -> None:
    """chisquare / z on small references, Jensen-Shannon on large ones, over the union of the values."""
    keys = sorted(set(reference_keys) | set(current_keys))
    reference = np.array([dict(zip(reference_keys, reference_counts, strict=True)).get(key, 0.0) for key in keys])
    current = np.array([dict(zip(current_keys, current_counts, strict=True)).get(key, 0.0) for key in keys])
    if reference.sum() <= SMALL_REFERENCE_ROWS:
        result.test = "chisquare" if len(keys) > 2 else "z"
        p_value = stattests.chisquare_p(reference, current) if len(keys) > 2 else stattests.z_test_p(reference, current)
        result.statistic, result.threshold, result.drifted = p_value, 0.05, p_value < 0.05
    else:
        distance = stattests.jensenshannon(reference / reference.sum(), current / current.sum())
        result.test, result.statistic, result.threshold, result.drifted = (
            "jensenshannon",
            distance,
            0.1,
            distance >= 0.1,
        )
    result.psi = stattests.psi(reference / reference.sum(), current / current.sum())


def _numeric_test(result: ColumnDrift, reference: dict[str, Any], current: dict[str, Any]) -> None:
    """KS on small references, normed Wasserstein on large ones; PSI on Sturges bins of both samples."""
    reference_atoms, current_atoms = _Atoms.of(reference), _Atoms.of(current)
    n_reference, n_current = reference_atoms.counts.sum(), current_atoms.counts.sum()
    pooled = (
        reference_atoms.pooled_shares(current["min"], current["max"]),
        current_atoms.pooled_shares(reference["min"], reference["max"]),
    )
    if n_reference <= SMALL_REFERENCE_ROWS:
        statistic = stattests.ks_statistic(*reference_atoms.sample, *current_atoms.sample)
        p_value = stattests.ks_p_value(int(n_reference), int(n_current), statistic)
        result.test, result.statistic, result.threshold, result.drifted = "ks", p_value, 0.05, p_value <= 0.05
        result.error_bound = float(max(pooled[0].max(), pooled[1].max()))
    else:
        norm = max(float(reference["std"]), 0.001)
        distance = stattests.wasserstein(*reference_atoms.sample, *current_atoms.sample) / norm
        result.test, result.statistic, result.threshold, result.drifted = "wasserstein", distance, 0.1, distance >= 0.1
        result.error_bound = (
            float(
                (pooled[0] * (reference_atoms.high - reference_atoms.low)).sum()
                + (pooled[1] * (current_atoms.high - current_atoms.low)).sum()
            )
            / norm
        )
    result.psi = _numeric_psi(reference, current, reference_atoms, current_atoms)


def _numeric_psi(reference, current, reference_atoms: _Atoms, current_atoms: _Atoms) -> float:
    if reference_atoms.exact and len(reference_atoms.positions) <= PSI_KEYED_VALUES:
        keys = np.union1d(reference_atoms.positions, current_atoms.positions)
        shares = [
            np.bincount(np.searchsorted(keys, atoms.positions), atoms.counts, len(keys))
            for atoms in (reference_atoms, current_atoms)
        ]
        return stattests.psi(shares[0] / shares[0].sum(), shares[1] / shares[1].sum())
    edges = _sturges_edges(
        min(reference["min"], current["min"]),
        max(reference["max"], current["max"]),
        reference_atoms.counts.sum() + current_atoms.counts.sum(),
    )
    shares = []
    for atoms in (reference_atoms, current_atoms):
        below = np.r_[atoms.mass_below(edges[:-1]), atoms.mass_below(edges[-1:], inclusive=True)]
        shares.append(np.diff(below) / atoms.counts.sum())
    return stattests.psi(*shares)


def _sturges_edges(low: float, high: float, size: float) -> np.ndarray:
    """``np.histogram_bin_edges(both samples, bins='sturges')`` from their range (low < high) and size."""
    width = (high - low) / (np.log2(size) + 1.0)
    return np.linspace(low, high, int(np.ceil((high - low) / width)) + 1)
