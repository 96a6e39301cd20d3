"""One writer of test_ducklake's concurrency test, in a process (and so a DuckDB) of its own, as a step of a run is.

    python lake_writer.py SETTINGS_JSON LANDING_FILE PERIOD MEETING_DIR WRITERS [--no-retry]

Replaces PERIOD of flights' raw_flights with LANDING_FILE through ``warehouse.load_raw_partition``. Its first
transaction waits before COMMIT until all WRITERS have done their DELETE and INSERT (a file each in MEETING_DIR), so
the writers commit at the same moment. ``--no-retry`` calls the load once, without ``retry_on_conflict``.
Prints one JSON line: whether it committed, how many times the transaction ran, and the error if any.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from mlplatform.data import lake, warehouse
from mlplatform.data.landing import LandingFileError
from mlplatform.datasets import get_dataset

MEETING_TIMEOUT_SECONDS = 60


def main() -> None:
    settings, landing_file, period, meeting, writers, *flags = sys.argv[1:]
    meeting_dir, runs = Path(meeting), []
    real_transaction = warehouse.transaction

    @contextmanager
    def meeting_before_commit(con):
        runs.append(time.time())
        with real_transaction(con):
            yield
            if len(runs) == 1:
                (meeting_dir / f"{period}-{landing_file.replace('/', '_')}.ready").touch()
                deadline = time.monotonic() + MEETING_TIMEOUT_SECONDS
                while len(list(meeting_dir.glob("*.ready"))) < int(writers):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the other writers never got to COMMIT")
                    time.sleep(0.01)

    warehouse.transaction = meeting_before_commit
    if "--no-retry" in flags:
        warehouse.retry_on_conflict = lambda fn, *args, **kwargs: fn()
    dataset = get_dataset("flights")
    report: dict = {"period": period}
    con = lake.connect(lake=lake.LakeSettings(**json.loads(settings)))
    try:
        report["rows"] = warehouse.load_raw_partition(
            con, dataset, dataset.contracts["flights"], period, Path(landing_file)
        )
        report["committed"] = True
    except Exception as error:  # reported to the test, which checks what it is
        report |= {
            "committed": False,
            "error_type": f"{type(error).__module__}.{type(error).__qualname__}",
            "landing_file_error": isinstance(error, LandingFileError),
            "conflict": lake.is_conflict(error),
            "error": str(error)[-500:],
        }
    finally:
        con.close()
    report["transactions"] = len(runs)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
