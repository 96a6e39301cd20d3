"""Time to value: how long headless ``mlplatform materialize`` of every dataset takes on a fresh data folder.

A fresh temporary data folder and Dagster home, ``mlplatform init`` and ``mlplatform seed`` (not timed), then
``mlplatform materialize`` timed in its own process, as a new user would run it: wall seconds, and the CPU
seconds it and its children (DVC, git) used, which other jobs on a shared machine change less. The code measured
is this checkout's ``src``; ``--baseline REV`` also measures that revision's ``src`` (a git worktree) in the same
run, right after, on the same kind of fresh folder. ``--git`` puts the DVC repository inside a git repository, as in
the project itself, where DVC also keeps ``.gitignore`` entries beside each version.

    .venv/bin/python benchmarks/materialize_time.py [--git] [--baseline REV] [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from docs_section import revision, write_section

SECTION = "Time to value: materialize every dataset"
REPOSITORY = Path(__file__).resolve().parents[1]


def mlplatform(env: dict[str, str], repository: Path, *args: str) -> tuple[float, float]:
    """Run ``mlplatform args`` from the repository root; its wall seconds and CPU seconds (user + system, its
    children's included). A failure stops the benchmark."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", *args], cwd=repository, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"mlplatform {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime


def measure(repository: Path, git: bool) -> tuple[float, float]:
    """Wall and CPU seconds of ``mlplatform materialize`` with ``repository``'s code, in a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="materialize-time-") as folder:
        return _measure(repository, Path(folder), git)


def _measure(repository: Path, folder: Path, git: bool) -> tuple[float, float]:
    if git:
        subprocess.run(["git", "init", "--quiet", str(folder)], check=True)
    env = {
        **os.environ,
        "MLPLATFORM_DATA_DIR": str(folder / "data"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
        "PYTHONPATH": str(repository / "src"),
    }
    mlplatform(env, repository, "init")
    mlplatform(env, repository, "seed")
    return mlplatform(env, repository, "materialize")


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A detached git worktree of ``revision``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="materialize-baseline-") as folder:
        tree = Path(folder) / "tree"
        add = ["git", "worktree", "add", "--detach", "--quiet", str(tree), revision]
        subprocess.run(add, cwd=REPOSITORY, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPOSITORY, check=True)


def section(results: dict[str, tuple[float, float]], load: float, git: bool, baseline: str | None) -> str:
    where = "inside a git repository" if git else "outside git"
    rows = [f"| {code} | {seconds:.0f} | {cpu:.0f} |" for code, (seconds, cpu) in results.items()]
    options = (" --git" if git else "") + (f" --baseline {baseline}" if baseline else "")
    return f"""## {SECTION}

`mlplatform materialize` of every declared dataset (every seeded period, training, promotion and scoring) on a
fresh data folder after `mlplatform init` and `mlplatform seed`, the DVC repository {where}; target: at most 60 s
wall. Measured {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load
average {load:.1f} at the end), Python {platform.python_version()}, one after the other in one run.

| code | wall seconds | CPU seconds (with DVC, git) |
|---|---:|---:|
{chr(10).join(rows)}

Command: `.venv/bin/python benchmarks/materialize_time.py{options} --write-docs`
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--git", action="store_true", help="put the DVC repository inside a git repository")
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision, for comparison")
    parser.add_argument("--write-docs", action="store_true", help="write the result into docs/benchmarks.md")
    args = parser.parse_args()
    results = {f"this checkout ({revision() or 'no git'})": measure(REPOSITORY, args.git)}
    if args.baseline:
        with worktree(args.baseline) as tree:
            results[f"baseline {args.baseline}"] = measure(tree, args.git)
    load = os.getloadavg()[0]
    for code, (seconds, cpu) in results.items():
        print(f"mlplatform materialize, {code}: {seconds:.1f} s wall, {cpu:.1f} s CPU")
    print(f"{os.cpu_count()} cores ({platform.machine()}), load average {load:.1f}")
    if args.write_docs:
        write_section(SECTION, section(results, load, args.git, args.baseline))
        print("wrote docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    main()
