"""The corpus of malformed landing files (tests/corpus; expected.yaml says what each must do): every file either
quarantines exactly its bad rows, with line, column, check and raw value, while its other rows flow clean, or
fails with one line naming the file and the problem and leaves the period's earlier version as it was."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import DATASETS

from mlplatform.data.landing import LandingFileError, period_file
from mlplatform.data.validation import split_partition
from mlplatform.data.warehouse import content_hash, load_raw_partition

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
PERIODS = {"flights": "2013-01", "employment": "2016"}


def test_every_corpus_file_has_its_expectation():
    assert {path.relative_to(CORPUS).as_posix() for path in CORPUS.glob("*/*/*.csv")} == set(EXPECTED)


def _landed(case: str, folder: Path) -> Path:
    """The corpus file as it would land: named after its dataset's period."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(CORPUS / case, folder / f"{PERIODS[case.split('/')[0]]}.csv"))


def _records(path: Path) -> int:
    """The file's records after the header (the corpus has no line break inside a quoted value)."""
    return len([line for line in path.read_bytes().split(b"\n") if line.strip()]) - 1


def _quarantined(con, dataset, source: str, period: str) -> dict[int, list[list[str]]]:
    rows = con.execute(
        f"SELECT source_line, failures FROM {dataset.table(source + '_quarantine')} WHERE period = ?", [period]
    ).fetchall()
    return {line: [[f["column_name"], f["check_name"], f["raw_value"]] for f in failures] for line, failures in rows}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_a_corpus_file_quarantines_its_bad_rows_or_fails_in_one_line(case, reference_warehouse, tmp_path):
    name, source, _ = case.split("/")
    dataset, period, expected = DATASETS[name], PERIODS[name], EXPECTED[case]
    contract = dataset.contracts[source]
    raw = dataset.table(f"raw_{source}")
    path = _landed(case, tmp_path / "landing")
    if "error" in expected:
        good = _landed(f"{name}/{source}/good.csv", tmp_path / "earlier")
        load_raw_partition(reference_warehouse, dataset, contract, period, good)
        before = content_hash(reference_warehouse, raw, period)
        with pytest.raises(LandingFileError) as raised:
            load_raw_partition(reference_warehouse, dataset, contract, period, path)
        error, line = raised.value, expected["error"]["line"]
        assert (error.path, error.line) == (path, line)
        assert error.problem.startswith(expected["error"]["problem"])
        assert str(error) == f"{path}{f', line {line}' if line else ''}: {error.problem}"
        assert "\n" not in str(error) and "Error" not in str(error)  # no DuckDB or Python error text
        assert content_hash(reference_warehouse, raw, period) == before
        return
    rows = load_raw_partition(reference_warehouse, dataset, contract, period, path)
    counts = split_partition(reference_warehouse, dataset, contract, period)
    assert rows == counts.raw == _records(path)
    assert counts.clean == counts.raw - len(expected["quarantined"])
    assert _quarantined(reference_warehouse, dataset, source, period) == expected["quarantined"]


@pytest.mark.parametrize(
    ("case", "landing"),
    [("flights/flights/semicolons.csv", {"delimiter": ";"}), ("employment/people/utf16.csv", {"encoding": "utf-16"})],
)
def test_a_delimiter_or_encoding_the_dataset_declares_is_read(case, landing, reference_warehouse, tmp_path):
    name, source, _ = case.split("/")
    dataset = DATASETS[name]
    declared = dataset.declaration.landing.model_copy(update=landing)
    dataset = dataclasses.replace(dataset, declaration=dataset.declaration.model_copy(update={"landing": declared}))
    path = _landed(case, tmp_path)
    load_raw_partition(reference_warehouse, dataset, dataset.contracts[source], PERIODS[name], path)
    counts = split_partition(reference_warehouse, dataset, dataset.contracts[source], PERIODS[name])
    assert (counts.raw, counts.clean) == (5, 5)


def test_one_bad_cell_in_a_real_month_costs_one_row(reference_warehouse, seeded_landing, tmp_path, flights):
    """The report that opened this: one cell in a ~28,000-row month stopped the whole month."""
    lines = period_file(seeded_landing, flights, "flights", "2013-03").read_text().splitlines()
    lines[14_000] = lines[14_000].replace(",", ",x", 1)
    path = tmp_path / "2013-03.csv"
    path.write_text("\n".join(lines) + "\n")
    contract = flights.contracts["flights"]
    load_raw_partition(reference_warehouse, flights, contract, "2013-03", path)
    counts = split_partition(reference_warehouse, flights, contract, "2013-03")
    assert (counts.raw, counts.clean, counts.quarantined) == (len(lines) - 1, len(lines) - 2, 1)
    value = lines[14_000].split(",")[1]
    assert _quarantined(reference_warehouse, flights, "flights", "2013-03") == {
        14_001: [["month", "type(BIGINT)", value]]
    }
