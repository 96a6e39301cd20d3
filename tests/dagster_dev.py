"""`dagster dev`, as `make run` starts it, for tests: on a free port, against a temp instance, and stopped with
every process it started (webserver, daemon, code servers, run workers all share its process group)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).parents[1]
READY_QUERY = "{ assetNodes { assetKey { path } } }"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, variables: Mapping | None = None, timeout: float = 10) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": dict(variables or {})}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


@contextmanager
def dagster_dev(home: Path, env: Mapping[str, str] | None = None, timeout: float = 120) -> Iterator[int]:
    """Serve the project's workspace with ``DAGSTER_HOME=home`` (given the shipped ``dagster.yaml`` when it has
    none) and ``env`` on top of this process's environment; yield the port once the code location is loaded.
    Its output goes to ``home/dagster_dev.log``, quoted when it does not come up."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log_path = home / "dagster_dev.log"
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(ROOT / "workspace.yaml")]
    with log_path.open("wb") as log, _interruptible_children():
        process = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env={**os.environ, "DAGSTER_HOME": str(home), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if graphql(port, READY_QUERY).get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            assert process.poll() is None, f"dagster dev exited:\n{_tail(log_path)}"
            assert time.monotonic() < deadline, (
                f"dagster dev did not serve the code location in time:\n{_tail(log_path)}"
            )
            time.sleep(1)
        yield port
    finally:
        stop_process_group(process)


@contextmanager
def _interruptible_children() -> Iterator[None]:
    """Start children with SIGINT at its default. A process started in the background by a non-interactive shell
    (CI, `make test &`) ignores SIGINT, its children inherit that, and `dagster dev` maps SIGTERM onto SIGINT's
    handler: it would ignore both and never shut down. A Python handler here is reset to the default on exec."""
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: leave it as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_process_group(process: subprocess.Popen, grace: float = 45) -> None:
    """Interrupt ``process`` (the leader of its own group), give it ``grace`` seconds to stop its children as
    `dagster dev` does on Ctrl-C, then kill whatever is left of the group."""
    group = process.pid
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not _group_members(group):
            break
        _signal_group(group, signum)
        deadline = time.monotonic() + 10
        while _group_members(group) and time.monotonic() < deadline:
            time.sleep(0.2)
    process.wait(timeout=10)
    left = _group_members(group)
    assert not left, f"processes of dagster dev survived: {left}"


def _signal_group(group: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_members(group: int) -> list[str]:
    """Live (not zombie) processes in the process group, as ``pid command``; on systems without /proc, whether
    the group can still be signalled."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [f"process group {group}"]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # /proc/PID/stat: pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ")".
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state != "Z":
            members.append(f"{entry.name} {cmdline[:200]}")
    return members


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
