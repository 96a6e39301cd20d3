"""Data-quality checks over the warehouse, as plain functions returning a verdict and its evidence."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from mlplatform.data.contracts import Contract
from mlplatform.data.sql import identifier
from mlplatform.data.warehouse import partition_row_count
from mlplatform.datasets.dataset import PERIOD_COLUMN, Dataset, clean_table, quarantine_table, raw_table


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, float | int | str] = field(default_factory=dict)


def row_conservation(con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, period: str) -> Verdict:
    """Every raw row is either clean or quarantined, exactly once."""
    raw, clean, quarantined = (
        partition_row_count(con, dataset.table(table(contract.name)), period)
        for table in (raw_table, clean_table, quarantine_table)
    )
    passed = raw == clean + quarantined
    return Verdict(
        passed,
        f"raw {raw} {'=' if passed else '!='} clean {clean} + quarantined {quarantined}",
        {"raw_rows": raw, "clean_rows": clean, "quarantined_rows": quarantined},
    )


def natural_key_unique(con: duckdb.DuckDBPyConnection, table: str, key: tuple[str, ...], period: str) -> Verdict:
    columns = ", ".join(identifier(column) for column in key)
    query = (
        f"SELECT count(*) FROM (SELECT {columns} FROM {table} WHERE {PERIOD_COLUMN} = ? "
        f"GROUP BY ALL HAVING count(*) > 1)"
    )
    repeated = con.execute(query, [period]).fetchall()[0][0]
    return Verdict(
        repeated == 0, f"{repeated} natural keys ({columns}) appear more than once", {"repeated_keys": repeated}
    )


def quarantine_share(
    con: duckdb.DuckDBPyConnection, dataset: Dataset, contract: Contract, period: str, max_share: float
) -> Verdict:
    quarantine = dataset.table(quarantine_table(contract.name))
    raw = partition_row_count(con, dataset.table(raw_table(contract.name)), period)
    quarantined = partition_row_count(con, quarantine, period)
    share = quarantined / raw if raw else 0.0
    top = con.execute(
        f"SELECT failed_checks, count(*) AS n FROM {quarantine} WHERE {PERIOD_COLUMN} = ? "
        "GROUP BY ALL ORDER BY n DESC, failed_checks LIMIT 1",
        [period],
    ).fetchall()
    metadata: dict[str, float | int | str] = {"quarantine_share": share, "max_share": max_share}
    if top:
        metadata["most_common_failure"] = f"{top[0][0]} ({top[0][1]} rows)"
    return Verdict(share <= max_share, f"{share:.4%} of rows quarantined (limit {max_share:.2%})", metadata)


def volume_vs_trailing_periods(
    con: duckdb.DuckDBPyConnection, table: str, period: str, trailing_periods: int, tolerance: float
) -> Verdict:
    """The period's row count within ``tolerance`` (a fraction) of the mean of up to ``trailing_periods`` before it."""
    rows = partition_row_count(con, table, period)
    counts = con.execute(
        f"SELECT count(*) FROM {table} WHERE {PERIOD_COLUMN} < ? GROUP BY {PERIOD_COLUMN} "
        f"ORDER BY {PERIOD_COLUMN} DESC LIMIT ?",
        [period, trailing_periods],
    ).fetchall()
    if not counts:
        return Verdict(True, "no earlier periods to compare with", {"rows": rows})
    mean = sum(count for (count,) in counts) / len(counts)
    change = rows / mean - 1
    return Verdict(
        abs(change) <= tolerance,
        f"{rows} rows, {change:+.1%} against the mean of the {len(counts)} periods before (tolerance {tolerance:.0%})",
        {"rows": rows, "trailing_mean": mean, "relative_change": change, "periods_compared": len(counts)},
    )


def null_shares(con: duckdb.DuckDBPyConnection, contract: Contract, table: str, period: str) -> Verdict:
    """Each column's share of nulls against the most its contract expects."""
    shares = ", ".join(f"avg(({identifier(name)} IS NULL)::DOUBLE)" for name in contract.columns)
    values = con.execute(f"SELECT {shares} FROM {table} WHERE {PERIOD_COLUMN} = ?", [period]).fetchall()[0]
    observed = {name: value or 0.0 for name, value in zip(contract.columns, values, strict=True)}
    over = [
        f"{name} {share:.2%} > {contract.fields[name].max_null_share:.0%}"
        for name, share in observed.items()
        if share > contract.fields[name].max_null_share
    ]
    description = "null shares above their limits: " + ", ".join(over) if over else "every null share within its limit"
    return Verdict(not over, description, {f"null_share/{name}": share for name, share in observed.items() if share})
