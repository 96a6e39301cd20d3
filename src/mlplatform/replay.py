"""``mlplatform replay``: 2013 dripped into an empty landing zone month by month, with the real sensors and
declarative automation evaluated against a real instance and what they request executed, as the daemon
would. Three retraining policies run on the same data, each in its own fresh folder and instance:

- ``never``: the first model stays champion all year;
- ``monthly``: a retrain after every month (what a blind schedule does);
- ``drift``: the retrains that ``drift_retrain_sensor`` requests.

Each month's row records what a person watching the platform would see: rows landed, drift share and the
drifted features, the champion that scored the month and its ROC AUC on it, and whether a retrain followed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from mlplatform import registry
from mlplatform.assets.serving import TRIGGER_TAG
from mlplatform.catalog import latest_metadata
from mlplatform.jobs import TRAINING_JOB
from mlplatform.landing import monthly_file, seed
from mlplatform.markdown import markdown_table
from mlplatform.params import param
from mlplatform.sensors.landing import landing_sensor
from mlplatform.sensors.retraining import DRIFT_REASON_TAG, available_window, drift_retrain_sensor
from mlplatform.settings import month_range

POLICIES = ("never", "monthly", "drift")
REASON_TAG = "mlplatform/reason"
SHIPPED_DAGSTER_YAML = Path(__file__).parents[2] / "dagster.yaml"


@dataclass
class MonthRow:
    month: str
    rows: int
    champion_version: str | None = None
    champion_roc_auc: float | None = None
    drifted_share: float | None = None
    drifted_features: list[str] = field(default_factory=list)
    retrain: str = ""  # why a retrain was requested after this month, and what came of it


@dataclass
class PolicyResult:
    policy: str
    months: list[MonthRow]
    scored_from: str  # the first month scored by a model that had not seen it

    @property
    def scored(self) -> list[MonthRow]:
        return [row for row in self.months if row.month >= self.scored_from and row.champion_roc_auc is not None]

    @property
    def mean_roc_auc(self) -> float:
        return statistics.fmean(row.champion_roc_auc for row in self.scored)

    @property
    def retrains(self) -> int:
        return sum(bool(row.retrain) for row in self.months)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "mean_monthly_roc_auc": self.mean_roc_auc,
            "retrains": self.retrains,
            "scored_months": [row.month for row in self.scored],
            "months": [asdict(row) for row in self.months],
        }


def replay(
    workdir: Path,
    months: list[str],
    policies: tuple[str, ...] = POLICIES,
    initial_months: int = 2,
    training_overrides: dict[str, Any] | None = None,
    progress: Callable[[str], None] = print,
) -> list[PolicyResult]:
    """Run each policy on ``months`` (the first model trained once ``initial_months`` months have landed,
    held out on the month after them)."""
    source = workdir / "source-landing"
    seed(source, months)
    return [
        _replay_policy(workdir / policy, source, months, policy, initial_months, training_overrides or {}, progress)
        for policy in policies
    ]


def _replay_policy(
    folder: Path,
    source: Path,
    months: list[str],
    policy: str,
    initial_months: int,
    training_overrides: dict[str, Any],
    progress: Callable[[str], None],
) -> PolicyResult:
    from mlplatform.definitions import build_definitions

    first_model_month = months[initial_months]
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder} is not empty: a replay starts from an empty platform, choose another --workdir"
        )
    rows = []
    with _fresh_platform(folder) as (landing, instance):
        defs = build_definitions("local")
        runner = _Runner(defs, instance, training_overrides)
        shutil.copytree(source / "reference", landing / "reference")
        for month in months:
            for dataset in ("flights", "weather"):
                (landing / dataset).mkdir(parents=True, exist_ok=True)
                shutil.copy2(monthly_file(source, dataset, month), landing / dataset)
            runner.tick_landing_sensor()
            if month == first_model_month:
                runner.train(month, initial_months, "manual")
            runner.follow_automation()
            row = _month_row(defs, instance, month)
            if month > first_model_month and month != months[-1]:
                row.retrain = runner.apply_policy(policy, month)
            rows.append(row)
            progress(_describe(policy, row))
    return PolicyResult(policy, rows, scored_from=month_range(first_model_month, months[-1])[1])


class _Runner:
    """Evaluates sensors and automation against the instance and executes what they request, in process."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, training_overrides: dict[str, Any]):
        self.defs, self.instance, self.training_overrides = defs, instance, training_overrides
        self.cursors: dict[str, str | None] = defaultdict(lambda: None)
        self.automation_cursor = None

    def tick_landing_sensor(self) -> None:
        while requests := self._tick(landing_sensor, resources={"landing": self.defs.resources["landing"]}):
            for request in requests:
                self.execute(request)

    def follow_automation(self) -> None:
        """Evaluate the automation conditions until nothing more is requested, running each month's assets."""
        while True:
            result = dg.evaluate_automation_conditions(self.defs, self.instance, cursor=self.automation_cursor)
            self.automation_cursor = result.cursor
            if not result.total_requested:
                return
            by_partition = defaultdict(list)
            for key in self.defs.resolve_asset_graph().get_all_asset_keys():
                for partition in result.get_requested_partitions(key):
                    by_partition[partition].append(key)
            job = self.defs.resolve_implicit_global_asset_job_def()
            for partition, keys in sorted(by_partition.items(), key=lambda item: item[0] or ""):
                job.execute_in_process(
                    instance=self.instance,
                    asset_selection=keys,
                    partition_key=partition,
                    raise_on_error=False,
                    tags={"dagster/from_automation_condition": "true"},
                )

    def apply_policy(self, policy: str, month: str) -> str:
        if policy == "never":
            return ""
        if policy == "monthly":
            return self.train(month, param("training", "window_months"), "scheduled")
        outcomes = [self.execute(request) for request in self._tick(drift_retrain_sensor)]
        return "; ".join(outcomes)

    def train(self, month: str, window: int, trigger: str) -> str:
        reason = {"manual": "first model", "scheduled": "monthly schedule"}[trigger]
        window = available_window(self.instance, month, window)
        run_config = {"ops": {"training_set": {"config": {"target_month": month, "window_months": window}}}}
        tags = {TRIGGER_TAG: trigger, REASON_TAG: reason}
        return self.execute(
            dg.RunRequest(run_key=f"{trigger}:{month}", job_name=TRAINING_JOB, run_config=run_config, tags=tags)
        )

    def execute(self, request: dg.RunRequest) -> str:
        """Run a requested job in process; for a training run, say why it ran and whether it was promoted."""
        run_config = dict(request.run_config)
        if request.job_name == TRAINING_JOB:
            ops = {**run_config.get("ops", {}), "delay_model": {"config": self.training_overrides}}
            run_config = {**run_config, "ops": ops}
        result = self.defs.resolve_job_def(request.job_name).execute_in_process(
            instance=self.instance,
            partition_key=request.partition_key,
            run_config=run_config,
            tags={**request.tags, **({"dagster/run_key": request.run_key} if request.run_key else {})},
            raise_on_error=False,
        )
        if request.job_name != TRAINING_JOB:
            return "" if result.success else f"{request.job_name} failed"
        why = request.tags.get(DRIFT_REASON_TAG) or request.tags.get(REASON_TAG, "")
        verdict = "promoted" if result.success else "refused by the gate"
        return f"{request.tags[TRIGGER_TAG]}: {why} -> {verdict}"

    def _tick(self, sensor: dg.SensorDefinition, resources: dict | None = None) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors[sensor.name], resources=resources)
        result = sensor(context)
        self.cursors[sensor.name] = result.cursor
        return list(result.run_requests or [])


def _month_row(defs: dg.Definitions, instance: dg.DagsterInstance, month: str) -> MonthRow:
    metadata = {
        asset: latest_metadata(instance, asset, month) or {}
        for asset in ("raw_flights", "feature_drift", "model_performance")
    }
    drift, performance = metadata["feature_drift"], metadata["model_performance"]
    with defs.resources["duckdb"].get_connection() as con:
        champion = registry.champion(con)
    return MonthRow(
        month=month,
        rows=metadata["raw_flights"].get("dagster/row_count", 0),
        champion_version=performance.get("champion_version") or (champion.version if champion else None),
        champion_roc_auc=performance.get("roc_auc"),
        drifted_share=drift.get("drifted_share"),
        drifted_features=list(drift.get("drifted_features", [])),
    )


@contextmanager
def _fresh_platform(folder: Path) -> Iterator[tuple[Path, dg.DagsterInstance]]:
    """An empty data folder, DVC repository and Dagster instance under ``folder``, set in the environment
    (resources read it) for the duration."""
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(SHIPPED_DAGSTER_YAML, home / "dagster.yaml")
    names = ("MLPLATFORM_DATA_DIR", "DAGSTER_HOME")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({"MLPLATFORM_DATA_DIR": str(folder / "data"), "DAGSTER_HOME": str(home)})
    try:
        with dg.DagsterInstance.get() as instance:
            yield folder / "data" / "landing", instance
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _describe(policy: str, row: MonthRow) -> str:
    auc = f"{row.champion_roc_auc:.4f}" if row.champion_roc_auc is not None else "-"
    share = f"{row.drifted_share:.0%}" if row.drifted_share is not None else "-"
    champion = (row.champion_version or "-")[:8]
    return (
        f"{policy:<8} {row.month}  rows {row.rows:>6}  drift {share:>4}  champion {champion}  AUC {auc}  {row.retrain}"
    )


def report(results: list[PolicyResult]) -> dict[str, Any]:
    """The replay as JSON: each policy's months, mean monthly ROC AUC and retrain count, and the comparison
    the issue asks for (the drift policy's share of the monthly policy's gain over the frozen model)."""
    by_policy = {result.policy: result for result in results}
    document: dict[str, Any] = {"policies": [result.to_dict() for result in results]}
    if set(POLICIES) <= set(by_policy):
        frozen, monthly, drift = (by_policy[name] for name in POLICIES)
        gain = monthly.mean_roc_auc - frozen.mean_roc_auc
        document["comparison"] = {
            "monthly_gain_over_frozen": gain,
            "drift_gain_over_frozen": drift.mean_roc_auc - frozen.mean_roc_auc,
            "drift_share_of_monthly_gain": (drift.mean_roc_auc - frozen.mean_roc_auc) / gain if gain else None,
            "drift_retrains_per_monthly_retrain": drift.retrains / monthly.retrains if monthly.retrains else None,
        }
    return document


def markdown_report(results: list[PolicyResult]) -> str:
    """The policies side by side, then each policy's months, as markdown tables."""
    summary = pl.DataFrame(
        [
            {"policy": r.policy, "mean monthly ROC AUC": round(r.mean_roc_auc, 4), "retrains": r.retrains}
            for r in results
        ]
    )
    sections = [markdown_table(summary)]
    comparison = report(results).get("comparison")
    if comparison:
        share, ratio = comparison["drift_share_of_monthly_gain"], comparison["drift_retrains_per_monthly_retrain"]
        sections.append(
            f"Monthly retraining gains {comparison['monthly_gain_over_frozen']:+.4f} mean AUC over the frozen model; "
            f"retraining on drift gains {comparison['drift_gain_over_frozen']:+.4f}"
            + (f" ({share:.0%} of the monthly gain)" if share is not None else "")
            + (f" with {ratio:.0%} of its retrains." if ratio is not None else ".")
        )
    for result in results:
        rows = pl.DataFrame(
            [
                {
                    "month": row.month,
                    "rows": row.rows,
                    "drift share": f"{row.drifted_share:.0%}" if row.drifted_share is not None else "",
                    "drifted features": ", ".join(row.drifted_features),
                    "champion": (row.champion_version or "")[:8],
                    "champion ROC AUC": f"{row.champion_roc_auc:.4f}" if row.champion_roc_auc is not None else "",
                    "retrain after the month": row.retrain,
                }
                for row in result.months
            ]
        )
        sections.append(f"### Policy `{result.policy}`\n\n" + markdown_table(rows))
    return "\n\n".join(sections) + "\n"


def write_report(results: list[PolicyResult], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report(results), indent=2, default=str) + "\n")
    return path
