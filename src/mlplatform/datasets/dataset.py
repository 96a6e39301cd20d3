"""A dataset loaded from its folder: the declaration, the contracts, the feature SQL, checked together.

``load_dataset(folder)`` reads ``defs.yaml``, ``contract.yaml`` and the feature SQL, and fails with
:class:`DeclarationError` naming the file and what is wrong: a misspelt key, a source without a contract,
a label or feature the SQL does not produce, SQL naming an unknown table or column.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import yaml
from pydantic import ValidationError

from mlplatform.data.contracts import Contract, ContractFile, contract_from_spec
from mlplatform.data.sql import identifier, sql_string
from mlplatform.datasets.declaration import DatasetDeclaration
from mlplatform.datasets.periods import PeriodError, Periods

DEFS_FILE = "defs.yaml"
CONTRACT_FILE = "contract.yaml"
PERIOD_COLUMN = "period"  # every periodic table carries its period's key
# Parameters the platform binds for every run of the feature SQL, besides the declared ones.
PERIOD_PARAMETERS = {"period": "VARCHAR", "period_start": "DATE", "period_end": "DATE"}
# Schemas a DuckDB database or a DuckLake catalog already has: a dataset's schema must not be one of them (main
# holds the model registry).
RESERVED_SCHEMAS = ("main", "temp", "information_schema", "pg_catalog", "system")
_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


class DeclarationError(ValueError):
    """A dataset declaration that cannot be used, naming the file and the problem."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Dataset:
    """Everything the platform knows about one dataset, all of it from the dataset's folder."""

    declaration: DatasetDeclaration
    folder: Path
    contracts: dict[str, Contract]  # every source and reference table
    features_sql: str

    @property
    def name(self) -> str:
        return self.declaration.name

    @cached_property
    def periods(self) -> Periods:
        return Periods(self.declaration.periods.grain, self.declaration.periods.start)

    @property
    def seed_periods(self) -> list[str]:
        """The periods `mlplatform seed` writes by default (none without seed data)."""
        seed = self.declaration.seed
        return self.periods.parse_spec(seed.periods) if seed else []

    @property
    def sources(self) -> list[str]:
        return list(self.declaration.landing.sources)

    @property
    def reference(self) -> list[str]:
        return list(self.declaration.landing.reference)

    @property
    def model(self):
        return self.declaration.predictor

    @property
    def label(self) -> str:
        return self.declaration.predictor.label

    @property
    def feature_columns(self) -> list[str]:
        return [*self.model.categorical, *self.model.numeric]

    def table(self, name: str) -> str:
        """A table of this dataset in the warehouse: ``"<dataset>"."<name>"`` (one schema per dataset)."""
        return f"{identifier(self.name)}.{identifier(name)}"

    def sql_parameters(self, period: str, params: dict[str, Any]) -> dict[str, Any]:
        """The values the feature SQL's ``$names`` are bound to for ``period``: only those it uses."""
        values = {
            **params,
            "period": period,
            "period_start": self.periods.parse(period),
            "period_end": self.periods.end(period),
        }
        return {name: values[name] for name in used_parameters(self.features_sql)}


def period_sql(dataset: Dataset, source: str, value_sql: str, *, as_text: bool = False) -> str:
    """SQL giving the period key of a row of ``source`` from its time column's value ``value_sql``.

    Timestamps are cut in the source's declared zone: stored values are UTC (``as_text``: the landing file's
    text, with its offset). An integer column (a year) is its own key for a yearly dataset.
    """
    spec = dataset.declaration.landing.sources[source]
    sql_type = dataset.contracts[source].sql_types[spec.time_column]
    fmt = sql_string(dataset.periods.fmt)
    if sql_type == "TIMESTAMP":
        instant = f"CAST({value_sql} AS TIMESTAMPTZ)" if as_text else f"timezone('UTC', {value_sql})"
        return f"strftime(timezone({sql_string(spec.timezone or 'UTC')}, {instant}), {fmt})"
    if sql_type == "DATE":
        return f"strftime(CAST({value_sql} AS DATE), {fmt})"
    return f"CAST(CAST({value_sql} AS BIGINT) AS VARCHAR)"  # a year: checked at load to be yearly


def in_period_sql(dataset: Dataset, source: str, value_sql: str, period: str) -> str:
    """SQL telling a stored row of ``source`` (time column value ``value_sql``) is in ``period``: what
    ``period_sql(...) = period`` tells, as a range on the stored value where it can be one. Cutting every
    row's timestamp in its zone took 3.7 s of a 10M-row period's validation; comparing it with two constants
    takes nothing."""
    spec = dataset.declaration.landing.sources[source]
    sql_type = dataset.contracts[source].sql_types[spec.time_column]
    if sql_type not in ("TIMESTAMP", "DATE"):
        return f"{period_sql(dataset, source, value_sql)} = {sql_string(period)}"

    def bound(day: dt.date) -> str:  # the period's first instant in its zone, as stored (UTC)
        if sql_type == "DATE":
            return f"DATE '{day}'"
        return f"timezone('UTC', timezone({sql_string(spec.timezone or 'UTC')}, TIMESTAMP '{day}'))"

    start, end = dataset.periods.parse(period), dataset.periods.end(period)
    return f"({value_sql} >= {bound(start)} AND {value_sql} < {bound(end)})"


def raw_table(source: str) -> str:
    return f"raw_{source}"


def clean_table(source: str) -> str:
    return f"clean_{source}"


def quarantine_table(source: str) -> str:
    return f"{source}_quarantine"


FEATURES_TABLE, TRAINING_SET_TABLE, PREDICTIONS_TABLE = "features", "training_set", "predictions"


def used_parameters(sql: str) -> list[str]:
    return sorted(set(_PARAMETER.findall(_SQL_COMMENT.sub("", sql))))


def load_dataset(folder: Path, attributes: dict[str, Any] | None = None) -> Dataset:
    """The dataset declared in ``folder`` (``attributes``: its defs.yaml attributes, when already read)."""
    folder = Path(folder)
    defs_path = folder / DEFS_FILE
    if attributes is None:
        document = _read_yaml(defs_path)
        attributes = document.get("attributes") if isinstance(document, dict) else None
        if not isinstance(attributes, dict):
            raise DeclarationError(defs_path, "expected 'type:' and an 'attributes:' mapping")
    declaration = _validated(DatasetDeclaration, attributes, defs_path, "attributes")
    contract_path = folder / CONTRACT_FILE
    contract_file = _validated(ContractFile, _read_yaml(contract_path), contract_path)
    contracts = _contracts(declaration, contract_file, contract_path, defs_path)
    sql_path = folder / declaration.features.sql
    if not sql_path.resolve().is_relative_to(folder.resolve()) or not sql_path.is_file():
        raise DeclarationError(defs_path, f"features.sql: no file {declaration.features.sql!r} in {folder}")
    dataset = Dataset(declaration, folder, contracts, sql_path.read_text())
    _check_names(dataset, defs_path)
    _check_references(dataset, contract_path)
    _check_periods(dataset, defs_path)
    _check_features(dataset, sql_path, defs_path)
    return dataset


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise DeclarationError(path, "file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DeclarationError(path, f"not valid YAML: {error}") from None


def _validated(model, data: Any, path: Path, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in (prefix, *issue['loc']) if part != '')}: {issue['msg']}"
            for issue in error.errors()
        ]
        raise DeclarationError(path, "; ".join(problems)) from None


def _contracts(
    declaration: DatasetDeclaration, contract_file: ContractFile, contract_path: Path, defs_path: Path
) -> dict[str, Contract]:
    declared = [*declaration.landing.sources, *declaration.landing.reference]
    missing = [name for name in declared if name not in contract_file.tables]
    if missing:
        raise DeclarationError(contract_path, f"no contract for {missing} (declared in {defs_path.name})")
    contracts = {}
    for name in declared:
        spec = contract_file.tables[name]
        source = declaration.landing.sources.get(name)
        if source and source.time_column not in spec.columns:
            raise DeclarationError(
                defs_path, f"landing.sources.{name}.time_column: {source.time_column!r} is not a column of {name}"
            )
        time_type = spec.columns[source.time_column].type if source else None
        if (
            time_type
            and time_type not in ("TIMESTAMP", "DATE")
            and (time_type != "BIGINT" or declaration.periods.grain != "yearly")
        ):
            raise DeclarationError(
                defs_path,
                f"landing.sources.{name}.time_column: {source.time_column!r} is {time_type}; a time column is a "
                "TIMESTAMP or DATE (or a BIGINT year, for yearly periods)",
            )
        try:
            contracts[name] = contract_from_spec(name, spec, source.time_column if source else None)
        except ValueError as error:
            raise DeclarationError(contract_path, f"tables.{name}: {error}") from None
    return contracts


def _check_names(dataset: Dataset, defs_path: Path) -> None:
    """The dataset's schema is its own, and no two of its tables (or the feature SQL's views) share a name: a
    reference table named ``features`` would otherwise be overwritten by the features, or overwrite them."""
    if dataset.name in RESERVED_SCHEMAS:
        raise DeclarationError(defs_path, f"name: {dataset.name!r} is a schema DuckDB reserves ({RESERVED_SCHEMAS})")
    named = [
        *((table, "the platform") for table in (FEATURES_TABLE, TRAINING_SET_TABLE, PREDICTIONS_TABLE)),
        *((table, f"landing.sources.{source}") for source in dataset.sources for table in _relations_of(source)),
        *((table, "landing.reference") for table in dataset.reference),
    ]
    owners: dict[str, str] = {}
    for table, owner in named:
        if table in owners:
            raise DeclarationError(defs_path, f"{owner} and {owners[table]} both name the table {table!r}")
        owners[table] = owner


def _relations_of(source: str) -> tuple[str, ...]:
    """The tables a landing source gets, and the views the feature SQL reads it through."""
    return raw_table(source), clean_table(source), quarantine_table(source), f"current_{source}", f"history_{source}"


def _check_references(dataset: Dataset, contract_path: Path) -> None:
    """A column's ``references`` names a column of one of the dataset's reference tables, of the same type; only
    a source's rows are checked against it (a reference table is loaded whole, before them)."""
    for name, contract in dataset.contracts.items():
        for column, (table, key) in contract.references.items():
            where = f"tables.{name}.columns.{column}.references"
            if name not in dataset.sources:
                raise DeclarationError(contract_path, f"{where}: only a landing source's columns may reference")
            if table not in dataset.reference:
                raise DeclarationError(
                    contract_path, f"{where}: {table!r} is not a reference table of {dataset.name} {dataset.reference}"
                )
            types = dataset.contracts[table].sql_types
            if key not in types:
                raise DeclarationError(contract_path, f"{where}: {table} has no column {key!r} ({list(types)})")
            if types[key] != contract.sql_types[column]:
                raise DeclarationError(
                    contract_path, f"{where}: {table}.{key} is {types[key]}, {column} {contract.sql_types[column]}"
                )


def _check_periods(dataset: Dataset, defs_path: Path) -> None:
    for key, value in (
        ("periods.start", dataset.declaration.periods.start),
        ("training.target_period", dataset.declaration.training.target_period),
    ):
        try:
            dataset.periods.parse(value)
        except PeriodError as error:
            raise DeclarationError(defs_path, f"{key}: {error}") from None


def feature_columns_of(dataset: Dataset) -> dict[str, str]:
    """The feature SQL's output columns and their types, from a run over empty tables shaped by the
    contracts. The SQL sees only ``current_<source>``, ``history_<source>`` and the reference tables, so
    naming anything else (a clean table, a later period) fails here, at load."""
    with duckdb.connect() as con:
        for name, contract in dataset.contracts.items():
            columns = ", ".join(f"{identifier(c)} {t}" for c, t in contract.sql_types.items())
            if name in dataset.sources:
                for view in (f"current_{name}", f"history_{name}"):
                    con.execute(f"CREATE TABLE {identifier(view)} ({columns}, {PERIOD_COLUMN} VARCHAR)")
            else:
                con.execute(f"CREATE TABLE {identifier(name)} ({columns})")
        params = dataset.sql_parameters(dataset.periods.start, dict(dataset.declaration.features.params))
        con.execute(f"CREATE TABLE _probe AS SELECT * FROM ({dataset.features_sql}) LIMIT 0", params)
        return {name: column_type for name, column_type, *_ in con.execute("DESCRIBE _probe").fetchall()}


def _check_features(dataset: Dataset, sql_path: Path, defs_path: Path) -> None:
    declared = dataset.declaration.features
    unknown = [
        name
        for name in used_parameters(dataset.features_sql)
        if name not in declared.params and name not in PERIOD_PARAMETERS
    ]
    if unknown:
        raise DeclarationError(
            sql_path,
            f"uses ${', $'.join(unknown)}, which neither features.params nor the platform "
            f"({', '.join(PERIOD_PARAMETERS)}) defines",
        )
    try:
        output = feature_columns_of(dataset)
    except duckdb.Error as error:
        raise DeclarationError(sql_path, _first_line(error) + _visible_tables(dataset)) from None
    if PERIOD_COLUMN in output:
        raise DeclarationError(sql_path, f"the platform adds the {PERIOD_COLUMN!r} column; do not select one")
    model, training, evaluation = dataset.model, dataset.declaration.training, dataset.declaration.evaluation
    wanted = {
        "features.key": declared.key,
        "features.lineage": list(declared.lineage),
        "predictor.label": [model.label],
        "predictor.categorical": model.categorical,
        "predictor.numeric": model.numeric,
        "training.time_order": training.time_order,
        "evaluation.baseline": evaluation.baseline,
        "evaluation.group_by": evaluation.group_by,
    }
    for key, columns in wanted.items():
        missing = [column for column in columns if column not in output]
        if missing:
            raise DeclarationError(
                defs_path, f"{key}: {missing} not among the columns {sql_path.name} produces ({sorted(output)})"
            )
    if output[model.label] != "BOOLEAN":
        raise DeclarationError(defs_path, f"predictor.label: {model.label!r} is {output[model.label]}, not BOOLEAN")
    if not dataset.feature_columns:
        raise DeclarationError(defs_path, "predictor: name at least one categorical or numeric feature")
    for column, sources in declared.lineage.items():
        for source in sources:
            table, _, name = source.partition(".")
            if table not in dataset.contracts or name not in dataset.contracts[table].fields:
                raise DeclarationError(defs_path, f"features.lineage.{column}: {source!r} is no contract column")


def _visible_tables(dataset: Dataset) -> str:
    views = [f"{kind}_{name}" for name in dataset.sources for kind in ("current", "history")]
    return f" (the feature SQL sees only {', '.join([*views, *dataset.reference])})"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
