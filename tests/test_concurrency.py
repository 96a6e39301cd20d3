"""The shipped dagster.yaml keeps DuckDB writers to one at a time, even in a parallel multiprocess run."""

import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path


def test_a_parallel_run_executes_its_duckdb_writers_one_at_a_time(data_dir):
    driver = Path(__file__).with_name("parallel_month.py")
    completed = subprocess.run(
        [sys.executable, str(driver), "flights", "2013-01"], capture_output=True, text=True, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["success"] and report["pool_limit"] == 1
    steps = report["steps"]
    assert sorted(step for *_, step in steps) == [
        "flights__features",
        "flights__raw_flights",
        "flights__raw_weather",
        "flights__validate_flights",
        "flights__validate_weather",
    ]
    # Each writer finished before the next one started: no two held the warehouse at once.
    for (_, end, step), (start, _, next_step) in pairwise(steps):
        assert end <= start, f"{step} overlapped {next_step}"
