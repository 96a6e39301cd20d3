"""``mlplatform replay``: a dataset's periods dripped into an empty landing zone one by one, with the real
sensors and declarative automation evaluated against a real instance and what they request executed, as the
daemon would. Three retraining policies run on the same data, each in its own fresh folder and instance:

- ``never``: the first model stays champion throughout;
- ``periodic``: a retrain after every period (what a blind schedule does);
- ``drift``: the retrains that the dataset's drift retrain sensor requests.

Each period's row records what a person watching the platform would see: rows landed, drift share and the
drifted features, the champion that scored the period and its ROC AUC on it, and whether a retrain followed.

A model that passes its gate is promoted whole (``rollout.steps`` [1.0]), not rolled out on a canary share: the
replay compares when to retrain, and a rollout would delay each retrain's effect by its steps alike.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from mlplatform.catalog import latest_metadata
from mlplatform.data.landing import dataset_dir, period_file, reference_file, seed
from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import raw_table
from mlplatform.markdown import markdown_table
from mlplatform.ml import registry
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.monitoring import FEATURE_DRIFT, PERFORMANCE
from mlplatform.orchestration.assets.serving import CHAMPION, TRIGGER_TAG
from mlplatform.orchestration.assets.training import MODEL
from mlplatform.orchestration.jobs import dataset_jobs, job_names
from mlplatform.orchestration.sensors.retraining import (
    DRIFT_REASON_TAG,
    available_window,
    drift_retrain_sensor,
    training_run_config,
)

# never: the first model forever; periodic: retrain after every period; drift: retrain when the drift puts more
# ROC AUC at risk than a retrain costs, or that much is already lost (monitoring.retrain_policy "risk"); share:
# retrain on dataset drift, a share of drifted features, or an AUC drop (retrain_policy "share", the old policy).
POLICIES = ("never", "periodic", "drift", "share")
SENSOR_POLICY = {"drift": "risk", "share": "share"}
REASON_TAG = "mlplatform/reason"
SHIPPED_DAGSTER_YAML = Path(__file__).parents[2] / "dagster.yaml"


@dataclass
class PeriodRow:
    period: str
    rows: int
    champion_version: str | None = None
    champion_roc_auc: float | None = None
    drifted_share: float | None = None
    drifted_features: list[str] = field(default_factory=list)
    auc_at_risk: float | None = None  # the drift weighed by the champion's permutation importance
    retrain: str = ""  # why a retrain was requested after this period, and what came of it


@dataclass
class PolicyResult:
    policy: str
    periods: list[PeriodRow]
    scored_from: str  # the first period scored by a model that had not seen it
    index: Callable[[str], int]  # the dataset's period order

    @property
    def scored(self) -> list[PeriodRow]:
        first = self.index(self.scored_from)
        return [row for row in self.periods if self.index(row.period) >= first and row.champion_roc_auc is not None]

    @property
    def mean_roc_auc(self) -> float:
        return statistics.fmean(row.champion_roc_auc for row in self.scored)

    @property
    def retrains(self) -> int:
        return sum(bool(row.retrain) for row in self.periods)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "mean_roc_auc": self.mean_roc_auc,
            "retrains": self.retrains,
            "scored_periods": [row.period for row in self.scored],
            "periods": [asdict(row) for row in self.periods],
        }


def replay(
    dataset: Dataset,
    workdir: Path,
    periods: list[str],
    policies: tuple[str, ...] = POLICIES,
    initial_periods: int = 2,
    training_overrides: dict[str, Any] | None = None,
    progress: Callable[[str], None] = print,
) -> list[PolicyResult]:
    """Run each policy on ``periods`` of ``dataset`` (the first model trained once ``initial_periods`` periods
    have landed, held out on the period after them)."""
    source = workdir / "source-landing"
    seed(source, dataset, periods)
    return [
        _replay_policy(
            dataset, workdir / policy, source, periods, policy, initial_periods, training_overrides or {}, progress
        )
        for policy in policies
    ]


def _replay_policy(
    dataset: Dataset,
    folder: Path,
    source: Path,
    periods: list[str],
    policy: str,
    initial_periods: int,
    training_overrides: dict[str, Any],
    progress: Callable[[str], None],
) -> PolicyResult:
    from mlplatform.definitions import build_definitions

    first_model_period = periods[initial_periods]
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder} is not empty: a replay starts from an empty platform, choose another --workdir"
        )
    rows = []
    with _fresh_platform(folder) as (landing, instance):
        defs = build_definitions("local")
        runner = _Runner(dataset, defs, instance, training_overrides)
        if dataset.reference:
            shutil.copytree(source / dataset.name / "reference", dataset_dir(landing, dataset) / "reference")
            for table in dataset.reference:
                reference_file(landing, dataset, table)  # copied whole, or the sensor waits
        for period in periods:
            for name in dataset.sources:
                target = dataset_dir(landing, dataset) / name
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(period_file(source, dataset, name, period), target)
            runner.tick_landing_sensor()
            if period == first_model_period:
                runner.train(period, initial_periods, "manual")
            runner.follow_automation()
            row = _period_row(dataset, defs, instance, period)
            if dataset.periods.index(period) > dataset.periods.index(first_model_period) and period != periods[-1]:
                row.retrain = runner.apply_policy(policy, period)
            rows.append(row)
            progress(_describe(policy, row))
    scored_from = dataset.periods.shift(first_model_period, 1)
    return PolicyResult(policy, rows, scored_from, dataset.periods.index)


class _Runner:
    """Evaluates sensors and automation against the instance and executes what they request, in process."""

    def __init__(self, dataset: Dataset, defs: dg.Definitions, instance: dg.DagsterInstance, overrides: dict[str, Any]):
        self.dataset, self.defs, self.instance, self.training_overrides = dataset, defs, instance, overrides
        self.jobs = job_names(dataset)
        self.cursors: dict[str, str | None] = defaultdict(lambda: None)
        self.automation_cursor = None
        self.retrain_sensors: dict[str, dg.SensorDefinition] = {}

    def _sensor(self, kind: str) -> dg.SensorDefinition:
        return self.defs.resolve_sensor_def(f"{self.dataset.name}_{kind}")

    def tick_landing_sensor(self) -> None:
        sensor = self._sensor("landing_sensor")
        while requests := self._tick(sensor, resources={"landing": self.defs.resources["landing"]}):
            for request in requests:
                self.execute(request)

    def follow_automation(self) -> None:
        """Evaluate the automation conditions until nothing more is requested, running each period's assets."""
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

    def apply_policy(self, policy: str, period: str) -> str:
        if policy == "never":
            return ""
        if policy == "periodic":
            return self.train(period, self.dataset.declaration.training.window_periods, "scheduled")
        outcomes = [self.execute(request) for request in self._tick(self._retrain_sensor(SENSOR_POLICY[policy]))]
        return "; ".join(outcomes)

    def _retrain_sensor(self, retrain_policy: str) -> dg.SensorDefinition:
        """The dataset's drift retrain sensor, deciding by ``retrain_policy`` whatever its defs.yaml says (built
        once per replay, not every period)."""
        if retrain_policy not in self.retrain_sensors:
            declaration = self.dataset.declaration
            monitoring = declaration.monitoring.model_copy(update={"retrain_policy": retrain_policy})
            dataset = replace(self.dataset, declaration=declaration.model_copy(update={"monitoring": monitoring}))
            self.retrain_sensors[retrain_policy] = drift_retrain_sensor(dataset, dataset_jobs(dataset))
        return self.retrain_sensors[retrain_policy]

    def train(self, period: str, window: int, trigger: str) -> str:
        reason = {"manual": "first model", "scheduled": "periodic schedule"}[trigger]
        window = available_window(self.instance, self.dataset, period, window)
        return self.execute(
            dg.RunRequest(
                run_key=f"{trigger}:{period}",
                job_name=self.jobs.training,
                run_config=training_run_config(self.dataset, period, window),
                tags={TRIGGER_TAG: trigger, REASON_TAG: reason},
            )
        )

    def execute(self, request: dg.RunRequest) -> str:
        """Run a requested job in process; for a training run, say why it ran and whether it was promoted."""
        run_config = dict(request.run_config)
        training = request.job_name == self.jobs.training
        if training:
            model_op = asset_key(self.dataset, MODEL).to_python_identifier()
            champion_op = asset_key(self.dataset, CHAMPION).to_python_identifier()
            ops = {
                **run_config.get("ops", {}),
                model_op: {"config": self.training_overrides},
                champion_op: {"config": {"steps": [1.0]}},  # promoted whole: see the module's docstring
            }
            run_config = {**run_config, "ops": ops}
        result = self.defs.resolve_job_def(request.job_name).execute_in_process(
            instance=self.instance,
            partition_key=request.partition_key,
            run_config=run_config,
            tags={**request.tags, **({"dagster/run_key": request.run_key} if request.run_key else {})},
            raise_on_error=False,
        )
        if not training:
            return "" if result.success else f"{request.job_name} failed"
        why = request.tags.get(DRIFT_REASON_TAG) or request.tags.get(REASON_TAG, "")
        verdict = "promoted" if result.success else "refused by the gate"
        return f"{request.tags[TRIGGER_TAG]}: {why} -> {verdict}"

    def _tick(self, sensor: dg.SensorDefinition, resources: dict | None = None) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors[sensor.name], resources=resources)
        result = sensor(context)
        self.cursors[sensor.name] = result.cursor
        return list(result.run_requests or [])


def _period_row(dataset: Dataset, defs: dg.Definitions, instance: dg.DagsterInstance, period: str) -> PeriodRow:
    first_source = asset_key(dataset, raw_table(dataset.sources[0]))
    raw = latest_metadata(instance, first_source, period) or {}
    drift = latest_metadata(instance, asset_key(dataset, FEATURE_DRIFT), period) or {}
    performance = latest_metadata(instance, asset_key(dataset, PERFORMANCE), period) or {}
    with defs.resources["duckdb"].get_connection() as con:
        champion = registry.champion(con, dataset.model.name)
    return PeriodRow(
        period=period,
        rows=raw.get("dagster/row_count", 0),
        champion_version=performance.get("champion_version") or (champion.version if champion else None),
        champion_roc_auc=performance.get("roc_auc"),
        drifted_share=drift.get("drifted_share"),
        drifted_features=list(drift.get("drifted_features", [])),
        auc_at_risk=drift.get("auc_at_risk"),
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


def _describe(policy: str, row: PeriodRow) -> str:
    auc = f"{row.champion_roc_auc:.4f}" if row.champion_roc_auc is not None else "-"
    share = f"{row.drifted_share:.0%}" if row.drifted_share is not None else "-"
    champion = (row.champion_version or "-")[:8]
    return (
        f"{policy:<8} {row.period}  rows {row.rows:>6}  drift {share:>4}  champion {champion}  AUC {auc}  {row.retrain}"
    )


def report(dataset: Dataset, results: list[PolicyResult]) -> dict[str, Any]:
    """The replay as JSON: the dataset, each policy's periods, mean ROC AUC and retrain count, and the drift
    policy's share of the periodic policy's gain over the frozen model."""
    by_policy = {result.policy: result for result in results}
    document: dict[str, Any] = {
        "dataset": dataset.name,
        "grain": dataset.periods.grain,
        "policies": [result.to_dict() for result in results],
    }
    if {"never", "periodic"} <= set(by_policy) and set(SENSOR_POLICY) & set(by_policy):
        frozen, periodic = by_policy["never"], by_policy["periodic"]
        gain = periodic.mean_roc_auc - frozen.mean_roc_auc
        comparison: dict[str, float | None] = {"periodic_gain_over_frozen": gain}
        for name in (name for name in SENSOR_POLICY if name in by_policy):
            result = by_policy[name]
            comparison |= {
                f"{name}_gain_over_frozen": result.mean_roc_auc - frozen.mean_roc_auc,
                f"{name}_share_of_periodic_gain": (result.mean_roc_auc - frozen.mean_roc_auc) / gain if gain else None,
                f"{name}_retrains_per_periodic_retrain": (
                    result.retrains / periodic.retrains if periodic.retrains else None
                ),
            }
        document["comparison"] = comparison
    return document


def markdown_report(dataset: Dataset, results: list[PolicyResult]) -> str:
    """The policies side by side, then each policy's periods, as markdown tables."""
    summary = pl.DataFrame(
        [{"policy": r.policy, "mean ROC AUC": round(r.mean_roc_auc, 4), "retrains": r.retrains} for r in results]
    )
    sections = [markdown_table(summary)]
    comparison = report(dataset, results).get("comparison")
    if comparison:
        sentences = [f"Retraining every period gains {comparison['periodic_gain_over_frozen']:+.4f} mean AUC over "
                     "the frozen model."]  # fmt: skip
        for name, words in (("drift", "on the drift signal"), ("share", "on the share of drifted features")):
            if f"{name}_gain_over_frozen" not in comparison:
                continue
            share, ratio = (
                comparison[f"{name}_share_of_periodic_gain"],
                comparison[f"{name}_retrains_per_periodic_retrain"],
            )
            sentences.append(
                f"Retraining {words} gains {comparison[f'{name}_gain_over_frozen']:+.4f}"
                + (f" ({share:.0%} of the periodic gain)" if share is not None else "")
                + (f" with {ratio:.0%} of its retrains." if ratio is not None else ".")
            )
        sections.append(" ".join(sentences))
    for result in results:
        rows = pl.DataFrame(
            [
                {
                    "period": row.period,
                    "rows": row.rows,
                    "drift share": f"{row.drifted_share:.0%}" if row.drifted_share is not None else "",
                    "drifted features": ", ".join(row.drifted_features),
                    "champion": (row.champion_version or "")[:8],
                    "champion ROC AUC": f"{row.champion_roc_auc:.4f}" if row.champion_roc_auc is not None else "",
                    "retrain after the period": row.retrain,
                }
                for row in result.periods
            ]
        )
        sections.append(f"### Policy `{result.policy}`\n\n" + markdown_table(rows))
    return "\n\n".join(sections) + "\n"


def write_report(dataset: Dataset, results: list[PolicyResult], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report(dataset, results), indent=2, default=str) + "\n")
    return path
