"""Dataset declarations: every declared dataset loads, and a broken one fails at load with a DeclarationError
naming the file and the problem (each case breaks a copy of a real dataset folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import DATASETS

from mlplatform.datasets import DEFS_DIR, DeclarationError, all_datasets, get_dataset, load_dataset
from mlplatform.datasets.dataset import (
    CONTRACT_FILE,
    DEFS_FILE,
    PERIOD_COLUMN,
    clean_table,
    feature_columns_of,
    quarantine_table,
    raw_table,
)


def test_both_datasets_are_declared():
    assert {"flights", "employment"} <= set(all_datasets())
    assert set(DATASETS) == {path.parent.name for path in DEFS_DIR.glob(f"*/{DEFS_FILE}")}
    with pytest.raises(KeyError, match="no dataset named 'nope'; declared: employment, flights"):
        get_dataset("nope")


def test_every_declared_dataset_loads(dataset):
    loaded = load_dataset(dataset.folder)
    assert loaded.name == dataset.name == dataset.folder.name
    assert loaded.declaration == dataset.declaration
    assert set(loaded.contracts) == {*loaded.sources, *loaded.reference}
    assert loaded.sources, "a dataset has at least one source"
    for source in loaded.sources:
        assert loaded.contracts[source].time_column == loaded.declaration.landing.sources[source].time_column
    output = feature_columns_of(loaded)
    features = loaded.declaration.features
    assert {*features.key, loaded.label, *loaded.feature_columns, *features.lineage} <= set(output)
    assert output[loaded.label] == "BOOLEAN" and PERIOD_COLUMN not in output
    assert loaded.periods.parse(loaded.declaration.training.target_period) >= loaded.periods.parse(loaded.periods.start)


def test_tables_live_in_a_schema_per_dataset(flights, employment):
    assert flights.table(raw_table("flights")) == '"flights"."raw_flights"'
    assert flights.table(clean_table("weather")) == '"flights"."clean_weather"'
    assert flights.table(quarantine_table("flights")) == '"flights"."flights_quarantine"'
    assert flights.table("planes") == '"flights"."planes"'
    assert employment.table(raw_table("people")) == '"employment"."raw_people"'


def test_the_declared_facts_of_the_two_datasets(flights, employment):
    assert (flights.periods.grain, flights.periods.start) == ("monthly", "2013-01")
    assert flights.sources == ["flights", "weather"] and flights.reference == ["airlines", "airports", "planes"]
    assert flights.declaration.landing.sources["flights"].timezone == "America/New_York"
    assert (employment.periods.grain, employment.periods.start) == ("yearly", "2015")
    assert employment.sources == ["people"] and employment.reference == []
    assert employment.contracts["people"].sql_types["year"] == "BIGINT"


def test_sql_parameters_bind_the_declared_params_and_the_period(flights, employment):
    params = dict(flights.declaration.features.params)
    bound = flights.sql_parameters("2013-12", params)
    assert bound["period_start"].isoformat() == "2013-12-01"
    assert bound == {"delay_threshold_minutes": 15, "period_start": bound["period_start"], "smoothing_flights": 20}
    assert employment.sql_parameters("2016", {"smoothing": 5}) == {"smoothing": 5}


def _copy(tmp_path: Path, dataset: str) -> Path:
    folder = tmp_path / dataset
    shutil.copytree(DEFS_DIR / dataset, folder, ignore=shutil.ignore_patterns("seed"))
    return folder


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert text.count(old) >= count, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def _refused(folder: Path, file: str) -> DeclarationError:
    with pytest.raises(DeclarationError) as raised:
        load_dataset(folder)
    error = raised.value
    assert error.path == folder / file
    assert str(error).startswith(f"{folder / file}: ")
    return error


def test_a_copied_folder_loads_unchanged(tmp_path):
    for name in DATASETS:
        assert load_dataset(_copy(tmp_path, name)).declaration == DATASETS[name].declaration


def test_a_misspelt_key_is_an_error_not_a_default(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / DEFS_FILE, "\n  training:\n", "\n  trainig:\n")
    problem = _refused(folder, DEFS_FILE).problem
    assert "attributes.trainig: Extra inputs are not permitted" in problem
    assert "attributes.training: Field required" in problem


def test_a_misspelt_nested_key_is_named_with_its_path(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / DEFS_FILE, "    lookback_periods: 1", "    lookback_period: 1")
    assert "attributes.features.lookback_period: Extra inputs are not permitted" in _refused(folder, DEFS_FILE).problem


def test_a_misspelt_contract_key_is_an_error(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / CONTRACT_FILE, "natural_key: [tailnum]", "natural_keys: [tailnum]")
    problem = _refused(folder, CONTRACT_FILE).problem
    assert "tables.planes.natural_keys: Extra inputs are not permitted" in problem


def test_a_label_the_sql_does_not_produce(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / DEFS_FILE, "label: is_delayed", "label: is_late")
    problem = _refused(folder, DEFS_FILE).problem
    assert problem.startswith("predictor.label: ['is_late'] not among the columns features.sql produces")
    assert "'is_delayed'" in problem  # the columns it does produce


def test_a_label_that_is_not_boolean(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / DEFS_FILE, "label: is_employed", "label: age_band")
    assert _refused(folder, DEFS_FILE).problem == "predictor.label: 'age_band' is BIGINT, not BOOLEAN"


def test_a_feature_the_sql_does_not_produce(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / DEFS_FILE, "numeric: [AGEP, age_schl_employment_rate]", "numeric: [AGEP, income]")
    assert _refused(folder, DEFS_FILE).problem.startswith("predictor.numeric: ['income'] not among the columns")


def test_a_key_the_sql_does_not_produce(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / DEFS_FILE, "key: [year, month, day,", "key: [yr, month, day,")
    assert _refused(folder, DEFS_FILE).problem.startswith("features.key: ['yr'] not among the columns")


def test_lineage_naming_no_contract_column(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / DEFS_FILE, "distance: [flights.distance]", "distance: [flights.miles]")
    assert _refused(folder, DEFS_FILE).problem == "features.lineage.distance: 'flights.miles' is no contract column"


def test_sql_naming_an_unknown_column(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / "features.sql", "    f.distance,\n", "    f.distance_miles,\n")
    problem = _refused(folder, "features.sql").problem
    assert "distance_miles" in problem
    assert "the feature SQL sees only current_flights, history_flights, current_weather, history_weather" in problem


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('"flights"."clean_flights"', "flights.clean_flights"),
        ("clean_flights", "clean_flights"),
        ("flights.raw_flights", "flights.raw_flights"),
    ],
)
def test_sql_reading_a_table_it_may_not(tmp_path, table, named):
    folder = _copy(tmp_path, "flights")
    _edit(folder / "features.sql", "FROM current_flights)", f"FROM {table})")
    problem = _refused(folder, "features.sql").problem
    assert problem.startswith("Catalog Error: Table with name") and named in problem
    assert (
        "(the feature SQL sees only current_flights, history_flights, current_weather, history_weather, "
        "airlines, airports, planes)" in problem
    )


def test_employment_sql_may_not_read_the_later_clean_rows(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / "features.sql", "FROM history_people", 'FROM "employment"."clean_people"')
    problem = _refused(folder, "features.sql").problem
    assert "clean_people" in problem and "sees only current_people, history_people)" in problem


def test_sql_selecting_the_period_column(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / "features.sql", "    p.id,\n", "    p.id, p.period,\n")
    assert "do not select one" in _refused(folder, "features.sql").problem


def test_a_source_without_a_contract(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(
        folder / DEFS_FILE,
        "      weather: {time_column: time_hour, timezone: America/New_York}\n",
        "      weather: {time_column: time_hour, timezone: America/New_York}\n"
        "      arrivals: {time_column: time_hour}\n",
    )
    assert _refused(folder, CONTRACT_FILE).problem == "no contract for ['arrivals'] (declared in defs.yaml)"


def test_a_reference_table_without_a_contract(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / DEFS_FILE, "reference: [airlines, airports, planes]", "reference: [airlines, planes, gates]")
    assert _refused(folder, CONTRACT_FILE).problem == "no contract for ['gates'] (declared in defs.yaml)"


def test_an_unknown_parameter(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(
        folder / "features.sql",
        "f.dep_delay > $delay_threshold_minutes AS is_delayed",
        "f.dep_delay > $max_delay AS is_delayed",
    )
    problem = _refused(folder, "features.sql").problem
    assert problem.startswith("uses $max_delay, which neither features.params nor the platform")
    assert "(period, period_start, period_end)" in problem


def test_a_parameter_in_a_comment_is_not_used(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / "features.sql", "-- Label:", "-- $not_a_param\n-- Label:")
    assert "not_a_param" not in load_dataset(folder).sql_parameters("2016", {"smoothing": 20})


@pytest.mark.parametrize(
    ("dataset_name", "old", "new", "problem"),
    [
        ("flights", 'start: "2013-01"', 'start: "2013-13"', "periods.start: expected a monthly period like 2013-01"),
        ("flights", 'start: "2013-01"', 'start: "2013-1"', "periods.start: expected a monthly period like 2013-01"),
        ("flights", 'target_period: "2013-07"', 'target_period: "July"', "training.target_period: expected a monthly"),
        ("employment", 'start: "2015"', 'start: "2015-01"', "periods.start: expected a yearly period like 2016"),
        ("employment", 'start: "2015"', "start: 2015", None),  # a bare YAML number is read as the key
    ],
)
def test_bad_period_keys(tmp_path, dataset_name, old, new, problem):
    folder = _copy(tmp_path, dataset_name)
    _edit(folder / DEFS_FILE, old, new)
    if problem is None:
        assert load_dataset(folder).periods.start == "2015"
    else:
        assert _refused(folder, DEFS_FILE).problem.startswith(problem)


def test_a_bad_grain(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / DEFS_FILE, "grain: yearly", "grain: weekly")
    assert (
        "attributes.periods.grain: Input should be 'daily', 'monthly' or 'yearly'"
        in _refused(folder, DEFS_FILE).problem
    )


def test_a_varchar_time_column(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / CONTRACT_FILE, "time_hour: {type: TIMESTAMP}", "time_hour: {type: VARCHAR}")
    problem = _refused(folder, DEFS_FILE).problem
    assert problem.startswith("landing.sources.flights.time_column: 'time_hour' is VARCHAR; a time column is a ")


def test_a_varchar_year_for_a_yearly_dataset(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / CONTRACT_FILE, "year: {type: BIGINT,", "year: {type: VARCHAR,")
    assert "'year' is VARCHAR" in _refused(folder, DEFS_FILE).problem


def test_a_year_column_is_no_time_column_for_monthly_periods(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / DEFS_FILE, "flights: {time_column: time_hour,", "flights: {time_column: year,")
    assert "'year' is BIGINT; a time column is a TIMESTAMP or DATE (or a BIGINT year, for yearly periods)" in (
        _refused(folder, DEFS_FILE).problem
    )


def test_a_time_column_that_is_not_a_column(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / DEFS_FILE, "people: {time_column: year}", "people: {time_column: survey_year}")
    assert _refused(folder, DEFS_FILE).problem == (
        "landing.sources.people.time_column: 'survey_year' is not a column of people"
    )


def test_an_unknown_contract_check(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / CONTRACT_FILE, "checks: {in_range: [1, 12]}", "checks: {between: [1, 12]}")
    assert "check 'between' is not one of" in _refused(folder, CONTRACT_FILE).problem


def test_a_natural_key_naming_no_column(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(folder / CONTRACT_FILE, "natural_key: [id]", "natural_key: [person_id]")
    assert "natural_key names columns the table does not have: ['person_id']" in _refused(folder, CONTRACT_FILE).problem


def test_missing_or_unreadable_files(tmp_path):
    folder = _copy(tmp_path, "employment")
    (folder / "features.sql").unlink()
    assert _refused(folder, DEFS_FILE).problem.startswith("features.sql: no file 'features.sql'")
    (folder / CONTRACT_FILE).write_text("tables: [unclosed\n")
    assert _refused(folder, CONTRACT_FILE).problem.startswith("not valid YAML")
    (folder / CONTRACT_FILE).unlink()
    assert _refused(folder, CONTRACT_FILE).problem == "file not found"
    (folder / DEFS_FILE).write_text("name: employment\n")
    assert _refused(folder, DEFS_FILE).problem == "expected 'type:' and an 'attributes:' mapping"


def test_feature_sql_outside_the_folder_is_refused(tmp_path):
    folder = _copy(tmp_path, "employment")
    shutil.copy(folder / "features.sql", tmp_path / "elsewhere.sql")
    _edit(folder / DEFS_FILE, "sql: features.sql", "sql: ../elsewhere.sql")
    assert _refused(folder, DEFS_FILE).problem.startswith("features.sql: no file '../elsewhere.sql'")


DEST = 'dest: {type: VARCHAR, checks: {str_matches: "^[A-Z]{3}$"}, references: airports.faa}'


@pytest.mark.parametrize(
    ("references", "problem"),
    [
        ("gates.faa", "tables.flights.columns.dest.references: 'gates' is not a reference table of flights"),
        ("airports.code", "tables.flights.columns.dest.references: airports has no column 'code'"),
        ("airports.alt", "tables.flights.columns.dest.references: airports.alt is BIGINT, dest VARCHAR"),
        ("airports", "tables.flights.columns.dest.references: String should match pattern"),
    ],
)
def test_a_reference_to_no_reference_column(tmp_path, references, problem):
    folder = _copy(tmp_path, "flights")
    _edit(folder / CONTRACT_FILE, DEST, DEST.replace("airports.faa", references))
    assert _refused(folder, CONTRACT_FILE).problem.startswith(problem)


def test_only_a_source_references_a_reference_table(tmp_path):
    folder = _copy(tmp_path, "flights")
    _edit(folder / CONTRACT_FILE, "engines: {type: BIGINT,", "engines: {type: BIGINT, references: airports.alt,")
    problem = _refused(folder, CONTRACT_FILE).problem
    assert problem == "tables.planes.columns.engines.references: only a landing source's columns may reference"


def test_the_landing_encoding_and_empty_periods_are_declared_values(tmp_path):
    folder = _copy(tmp_path, "employment")
    _edit(
        folder / DEFS_FILE,
        "    null_string: NA\n",
        "    null_string: NA\n    encoding: ebcdic\n    empty_periods: maybe\n",
    )
    problem = _refused(folder, DEFS_FILE).problem
    assert "attributes.landing.encoding: Input should be 'utf-8', 'utf-16' or 'latin-1'" in problem
    assert "attributes.landing.empty_periods: Input should be 'error' or 'allowed'" in problem
