"""What the code location declares, per dataset, against a committed snapshot (tests/snapshots/definitions.json).

A change to a dataset's assets, groups, partitions, checks, jobs or sensors shows here as a diff. When the change
is intended, regenerate the file and commit it with the change:

    MLPLATFORM_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.datasets import all_datasets
from mlplatform.definitions import build_definitions
from mlplatform.orchestration.assets.common import STAGE_TAG
from mlplatform.orchestration.component import dataset_definitions
from mlplatform.orchestration.resources import resources_for

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE_ENV = "MLPLATFORM_UPDATE_SNAPSHOT"
PLATFORM = "platform"  # what belongs to no dataset: the failure alerts and declarative automation sensors


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict | None:
    if partitions_def is None:
        return None
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition), partitions_def
    return {
        "cron": partitions_def.cron_schedule,
        "start": partitions_def.start.isoformat(),
        "fmt": partitions_def.fmt,
        "end_offset": partitions_def.end_offset,
        "timezone": partitions_def.timezone,
    }


def definitions_snapshot(defs: dg.Definitions) -> dict:
    """Per dataset (an asset key's first part): its assets, jobs and sensors, as plain JSON values."""
    graph = defs.resolve_asset_graph()
    snapshot: dict[str, dict] = {}

    def section(name: str) -> dict:
        return snapshot.setdefault(name, {"assets": {}, "jobs": {}, "sensors": {}})

    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        checks = {
            spec.name: {"blocking": spec.blocking}
            for spec in defs.resolve_assets_def(key).check_specs
            if spec.asset_key == key
        }
        section(key.path[0])["assets"][key.to_user_string()] = {
            "group": node.group_name,
            "stage": node.tags.get(STAGE_TAG),
            "partitions": _partitions(node.partitions_def),
            "checks": dict(sorted(checks.items())),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
        }
    owner_of_job = {}
    for job in defs.jobs:
        keys = sorted(key.to_user_string() for key in job.selection.resolve(graph))
        datasets = {key.split("/")[0] for key in keys}
        assert len(datasets) == 1, f"{job.name} selects assets of {datasets}"
        owner_of_job[job.name] = dataset = datasets.pop()
        section(dataset)["jobs"][job.name] = {"assets": keys, "tags": dict(sorted(job.tags.items()))}
    for sensor in defs.sensors:
        jobs = sorted(job.name for job in sensor.jobs) if sensor.has_jobs else []
        owners = {owner_of_job[job] for job in jobs}
        assert len(owners) <= 1, f"{sensor.name} targets jobs of {owners}"
        section(owners.pop() if owners else PLATFORM)["sensors"][sensor.name] = {
            "kind": type(sensor).__name__,
            "jobs": jobs,
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
        }
    return dict(sorted(snapshot.items()))


def render(snapshot: dict) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True) + "\n"


@pytest.fixture(scope="module")
def snapshot() -> dict:
    return definitions_snapshot(build_definitions("local"))


def test_definitions_match_the_committed_snapshot(snapshot):
    actual = render(snapshot)
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(actual)
        return
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{SNAPSHOT.relative_to(Path(__file__).parents[1])} (committed)",
                tofile="the definitions now",
            )
        )
        pytest.fail(
            "The definitions differ from the committed snapshot. If the change is intended, rerun with "
            f"{UPDATE_ENV}=1 and commit the file.\n{diff}",
            pytrace=False,
        )


def test_every_declared_dataset_is_in_the_snapshot(snapshot):
    assert set(snapshot) == {*all_datasets(), PLATFORM}
    assert set(snapshot[PLATFORM]["sensors"]) == {"run_failure_alert_sensor", "follow_new_data_sensor"}
    assert not snapshot[PLATFORM]["assets"] and not snapshot[PLATFORM]["jobs"]


@pytest.mark.parametrize("name", sorted(all_datasets()))
def test_the_component_builds_what_the_factory_builds(snapshot, name):
    """A dataset folder loaded as a component declares exactly what dataset_definitions(dataset) gives."""
    resources = dg.Definitions(resources=resources_for("local"))
    alone = definitions_snapshot(dg.Definitions.merge(dataset_definitions(all_datasets()[name]), resources))
    assert alone == {name: snapshot[name]}
