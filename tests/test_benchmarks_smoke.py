"""Cheap checks of the benchmark scripts' pure helpers (the benchmarks themselves are run by hand)."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlplatform.datasets import get_dataset

# The benchmark compares models on the flights dataset's declared features.
FLIGHTS_MODEL = get_dataset("flights").model
CATEGORICAL, NUMERIC = FLIGHTS_MODEL.categorical, FLIGHTS_MODEL.numeric

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "model_vs_lightgbm.py"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their shared docs_section module, as when run directly
import docs_section  # noqa: E402


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("model_vs_lightgbm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_frame(carriers: list[str | None]) -> pl.DataFrame:
    """One flight per carrier; ``temp`` null on the first, every other numeric column 0, 1, 2, ..."""
    rows = range(len(carriers))
    numbers = {column: [float(i) for i in rows] for column in NUMERIC}
    categories = {"origin": "JFK", "dest": "LAX", "sched_hour": 5, "weekday": 1}
    return pl.DataFrame(
        {
            "carrier": carriers,
            **{column: [value for _ in rows] for column, value in categories.items()},
            **numbers,
            "temp": [None, *numbers["temp"][1:]],
        }
    )


def test_lightgbm_features_codes_categories_and_keeps_numbers(benchmark):
    vocabularies = {"carrier": ["AA", "UA"], "origin": ["EWR", "JFK"], "dest": ["LAX"], "sched_hour": ["5"]}
    vocabularies["weekday"] = ["1", "2"]
    features = benchmark.lightgbm_features(tiny_frame(["UA", "AA", "ZZ", None]), vocabularies)

    assert features.shape == (4, len(CATEGORICAL) + len(NUMERIC))
    np.testing.assert_array_equal(features[:, 0], [1.0, 0.0, np.nan, np.nan])  # unseen and null are missing
    np.testing.assert_array_equal(features[:, 1:5], [[1.0, 0.0, 0.0, 0.0]] * 4)
    temp = len(CATEGORICAL) + NUMERIC.index("temp")
    np.testing.assert_array_equal(features[:, temp], [np.nan, 1.0, 2.0, 3.0])  # nulls stay missing, values as is


def test_replace_section_keeps_other_sections(benchmark):
    heading = f"## {benchmark.SECTION}"
    replace_section = functools.partial(docs_section.replace_section, title=benchmark.SECTION)
    document = f"# Benchmarks\n\n## Other\n\nkept\n\n{heading}\n\nold\n\n## Last\n\nkept too\n"
    replaced = replace_section(document, text=f"{heading}\n\nnew\n")
    assert replaced == f"# Benchmarks\n\n## Other\n\nkept\n\n{heading}\n\nnew\n\n## Last\n\nkept too\n"
    assert replace_section("# Benchmarks\n", text=f"{heading}\n\nnew\n").endswith(f"\n\n{heading}\n\nnew\n")


def test_target_months_need_their_whole_window_in_the_data(benchmark):
    assert benchmark.target_months("2013-07,2013-10..2013-11") == ["2013-07", "2013-10", "2013-11"]
    with pytest.raises(argparse.ArgumentTypeError):
        benchmark.target_months("2013-06")
