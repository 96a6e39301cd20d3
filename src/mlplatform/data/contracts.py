"""Data contracts: a dataset's ``contract.yaml`` gives each table's DuckDB types and its pandera schema.

Each column states its type, its checks and, where nulls are allowed, why. Rows that break a contract are
quarantined with the names of the checks they failed; they are never dropped.

A column's checks are pandera's built-in checks by name (``in_range: [1, 31]``, ``isin: [...]``,
``str_matches: '^[A-Z]{2}$'``, ``ge``, ``le``, ``gt``, ``lt``) or named polars SQL expressions
(``hhmm: {expression: "dep_time % 100 < 60"}``); ``row_checks`` are named expressions over a whole row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pandera.polars as pa
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlplatform.data.sql import COLUMN, NAME

SQL_TYPES = ("BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP")
_POLARS_TYPES = {
    "BIGINT": pl.Int64,
    "DOUBLE": pl.Float64,
    "VARCHAR": pl.String,
    "BOOLEAN": pl.Boolean,
    "DATE": pl.Date,
    "TIMESTAMP": pl.Datetime("us"),
}
_BUILT_IN = {"in_range": 2, "isin": 1, "notin": 1, "str_matches": 1, "ge": 1, "le": 1, "gt": 1, "lt": 1, "eq": 1}

# Set on rows whose natural key already appeared in the same partition, on rows outside the partition's
# period and on rows whose value a reference table lacks (computed in SQL, since a bounded batch cannot see the
# whole partition, nor another table).
DUPLICATE_FLAG = "_duplicate_key"
IN_PERIOD_FLAG = "_in_period"
REFERENCE_FLAG = "_references_{column}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: Literal[SQL_TYPES]  # type: ignore[valid-type]
    checks: dict[str, Any] = Field(default_factory=dict)
    null_reason: str | None = Field(default=None, description="Why a null is allowed; absent: nulls break it.")
    max_null_share: float = Field(default=0.0, ge=0, le=1, description="Above this share a period is suspect.")
    references: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$",
        description="A reference table's column holding every value this column may take: airlines.carrier.",
    )

    @model_validator(mode="after")
    def _known_checks(self) -> ColumnSpec:
        for name, argument in self.checks.items():
            if name in _BUILT_IN:
                continue
            if not (isinstance(argument, dict) and set(argument) == {"expression"}):
                raise ValueError(
                    f"check {name!r} is not one of {sorted(_BUILT_IN)}; a custom check is "
                    f"'{name}: {{expression: <polars SQL>}}'"
                )
        return self


# Columns the platform adds beside a contract's own in a source's raw, clean and quarantine tables (period,
# lineage, where a row was read and why it was quarantined): a contract declaring one would collide with it.
PLATFORM_COLUMNS = ("period", "source_file", "source_line", "load_failures", "failed_checks", "failures")


class TableSpec(_Strict):
    columns: dict[Annotated[str, Field(pattern=COLUMN)], ColumnSpec] = Field(min_length=1)
    natural_key: list[Annotated[str, Field(pattern=COLUMN)]] = Field(min_length=1)
    row_checks: dict[str, str] = Field(default_factory=dict, description="Check name -> polars SQL expression.")

    @model_validator(mode="after")
    def _key_in_columns(self) -> TableSpec:
        missing = [column for column in self.natural_key if column not in self.columns]
        if missing:
            raise ValueError(f"natural_key names columns the table does not have: {missing}")
        return self

    @model_validator(mode="after")
    def _no_platform_column(self) -> TableSpec:
        taken = [column for column in self.columns if column.lower() in PLATFORM_COLUMNS]
        if taken:
            raise ValueError(f"{taken} named like the platform's own columns {PLATFORM_COLUMNS}; rename them")
        return self

    @model_validator(mode="after")
    def _distinct_in_sql(self) -> TableSpec:
        """DuckDB compares names without case, even quoted: ``AGEP`` and ``agep`` would be one column."""
        seen: dict[str, str] = {}
        for column in self.columns:
            if column.lower() in seen:
                raise ValueError(f"columns {seen[column.lower()]!r} and {column!r} differ only in case")
            seen[column.lower()] = column
        return self


class ContractFile(_Strict):
    tables: dict[Annotated[str, Field(pattern=NAME)], TableSpec] = Field(min_length=1)


@dataclass(frozen=True)
class ColumnContract:
    sql_type: str
    checks: tuple[pa.Check, ...] = ()
    null_reason: str | None = None  # None: nulls break the contract
    # Above this share of nulls in a period the data is suspect (a warning, not a quarantine).
    max_null_share: float = 0.0
    references: str | None = None  # "<reference table>.<column>" that holds every value this column may take

    @property
    def nullable(self) -> bool:
        return self.null_reason is not None


@dataclass(frozen=True)
class Contract:
    """The contract of one table."""

    name: str
    fields: dict[str, ColumnContract]
    natural_key: tuple[str, ...]
    row_checks: tuple[pa.Check, ...] = field(default=())
    time_column: str | None = None  # set for tables that arrive by period

    @property
    def columns(self) -> list[str]:
        return list(self.fields)

    @property
    def sql_types(self) -> dict[str, str]:
        return {name: spec.sql_type for name, spec in self.fields.items()}

    @property
    def references(self) -> dict[str, tuple[str, str]]:
        """Column -> (reference table, its column) for each column checked against a reference table."""
        return {name: tuple(spec.references.split(".")) for name, spec in self.fields.items() if spec.references}

    @property
    def flags(self) -> dict[str, tuple[str, str]]:
        """Each flag column computed in SQL -> the (column, check) a row with the flag wrong fails."""
        flags = {DUPLICATE_FLAG: ("natural_key", "duplicate")}
        if self.time_column:
            flags[IN_PERIOD_FLAG] = (self.time_column, "in_period")
        for column, (table, key) in self.references.items():
            flags[REFERENCE_FLAG.format(column=column)] = (column, f"references({table}.{key})")
        return flags

    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema, over the contract's columns and the flags computed in SQL."""
        columns = {
            name: pa.Column(_POLARS_TYPES[spec.sql_type], checks=list(spec.checks), nullable=spec.nullable)
            for name, spec in self.fields.items()
        }
        columns[DUPLICATE_FLAG] = pa.Column(pl.Boolean, checks=[pa.Check.eq(False, name="unique_natural_key")])
        for flag, (_, check) in self.flags.items():
            if flag != DUPLICATE_FLAG:
                columns[flag] = pa.Column(pl.Boolean, checks=[pa.Check.eq(True, name=check)])
        return pa.DataFrameSchema(columns, checks=list(self.row_checks), name=self.name)


def contract_from_spec(name: str, spec: TableSpec, time_column: str | None = None) -> Contract:
    fields = {
        column: ColumnContract(
            column_spec.type,
            tuple(_check(column, check, argument) for check, argument in column_spec.checks.items()),
            column_spec.null_reason,
            column_spec.max_null_share,
            column_spec.references,
        )
        for column, column_spec in spec.columns.items()
    }
    row_checks = tuple(_expression_check(check, expression) for check, expression in spec.row_checks.items())
    return Contract(name, fields, tuple(spec.natural_key), row_checks, time_column)


def _check(column: str, name: str, argument: Any) -> pa.Check:
    if name not in _BUILT_IN:
        expression = argument["expression"]
        return pa.Check(lambda data: data.lazyframe.select(pl.sql_expr(expression)), name=name)
    arguments = argument if _BUILT_IN[name] == 2 else [argument]
    if _BUILT_IN[name] == 2 and (not isinstance(argument, list) or len(argument) != 2):
        raise ValueError(f"column {column!r}: check {name} takes [low, high], not {argument!r}")
    return getattr(pa.Check, name)(*arguments)


def _expression_check(name: str, expression: str) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(pl.sql_expr(expression)), name=name)
