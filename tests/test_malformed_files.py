"""Property tests: landing files broken at random, from each source's contract and a few of its real rows, never
crash the load unhandled, and conserve every record.

A file is either wrong as a whole (another delimiter, no header, a missing column, no rows, empty), which is one
LandingFileError line naming it, or it loads: raw = clean + quarantined = the file's records, every row broken
for sure is quarantined (a cell that cannot be of its column's type, NaN or an infinity, a line with too few or
too many fields) and every row left alone is clean, whatever the column order, byte-order mark and line ends.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from conftest import DATASETS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplatform.data.landing import LandingFileError
from mlplatform.data.validation import split_partition
from mlplatform.data.warehouse import load_raw_partition

CORPUS = Path(__file__).parent / "corpus"
SOURCES = [("flights", "flights", "2013-01"), ("flights", "weather", "2013-01"), ("employment", "people", "2016")]
# Text that never parses as a number (no digits), never ends a field or a line: a random value that may or may
# not break its column.
NOISE = st.text(alphabet=st.sampled_from("abcXYZ .-_éß☃"), max_size=8)
WHOLE_FILE_PROBLEMS = ("semicolons", "no_header", "header_only", "missing_column", "empty")


def broken_cell(sql_type: str) -> st.SearchStrategy[str]:
    """Text that a column of ``sql_type`` cannot hold: it does not parse, or is NaN or an infinity."""
    unparsable = ["", "abc", "12abc", "1.2.3", "--1"]
    extra = {
        "BIGINT": ["inf", "NaN", "9" * 30],
        "DOUBLE": ["NaN", "nan", "inf", "-Infinity"],
        "TIMESTAMP": ["infinity"],
    }
    return st.sampled_from(unparsable + extra.get(sql_type, []))


@st.composite
def broken_files(draw, name: str, source: str):
    """(file bytes, lines of rows broken for sure, lines of rows that may be broken, whole-file problem or None)."""
    contract = DATASETS[name].contracts[source]
    header, *rows = (CORPUS / name / source / "good.csv").read_text().splitlines()
    names = header.split(",")
    typed = [column for column in names if contract.sql_types[column] != "VARCHAR"]
    records, broken, maybe = [], set(), set()
    for line, row in enumerate(rows, start=2):
        values = dict(zip(names, row.split(","), strict=True))
        kind = draw(st.sampled_from(["clean", "cell", "fields", "noise"]))
        if kind == "cell":
            column = draw(st.sampled_from(typed))
            values[column] = draw(broken_cell(contract.sql_types[column]))
        elif kind == "noise":
            values[draw(st.sampled_from(names))] = draw(NOISE)
        records.append((values, kind, draw(st.integers(1, 3))))
        (broken if kind in ("cell", "fields") else maybe if kind == "noise" else set()).add(line)
    order = draw(st.permutations(names))
    problem = draw(st.sampled_from([None] * 5 + list(WHOLE_FILE_PROBLEMS)))
    if problem == "missing_column":
        order = order[1:]
    lines = [] if problem == "no_header" else [",".join(order)]
    for values, kind, fields in records:
        cells = [values[column] for column in order]
        if kind == "fields":
            cells = cells[:-fields] if draw(st.booleans()) else cells + ["surplus"] * fields
        lines.append(",".join(cells))
    if problem == "header_only":
        lines = lines[:1]
    end = "\r\n" if draw(st.booleans()) else "\n"
    text = end.join(lines) + end
    cut = draw(st.none() | st.integers(1, len(lines[-1]) - 1)) if problem is None else None
    if cut is not None:  # an export cut off mid-line: the last row half written, no line end
        text = end.join(lines[:-1]) + end + lines[-1][:cut]
        maybe.add(len(lines))
        broken.discard(len(lines))
    if problem == "semicolons":
        text = text.replace(",", ";")
    data = b"" if problem == "empty" else text.encode()
    if draw(st.booleans()):
        data = codecs.BOM_UTF8 + data
    return data, broken, maybe, problem


@pytest.mark.parametrize(("name", "source", "period"), SOURCES)
def test_broken_files_never_crash_and_every_record_is_conserved(name, source, period, reference_warehouse, tmp_path):
    dataset = DATASETS[name]
    contract = dataset.contracts[source]
    path = tmp_path / f"{period}.csv"

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,  # the same files on every run: a failure is reproducible, never flaky
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(broken_files(name, source))
    def check(file):
        data, broken, maybe, problem = file
        path.write_bytes(data)
        if problem:
            with pytest.raises(LandingFileError) as raised:
                load_raw_partition(reference_warehouse, dataset, contract, period, path)
            assert str(raised.value).startswith(str(path)) and "\n" not in str(raised.value)
            return
        records = len([line for line in data.split(b"\n") if line.strip()]) - 1
        assert load_raw_partition(reference_warehouse, dataset, contract, period, path) == records
        counts = split_partition(reference_warehouse, dataset, contract, period)
        assert counts.raw == counts.clean + counts.quarantined == records
        quarantined = {
            line
            for (line,) in reference_warehouse.execute(
                f"SELECT source_line FROM {dataset.table(source + '_quarantine')} WHERE period = ?", [period]
            ).fetchall()
        }
        assert broken <= quarantined <= broken | maybe
        assert counts.quarantined == len(quarantined)  # one row per line

    check()
