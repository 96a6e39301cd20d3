"""Rollout: a dataset's ``rollout``, which decides each period, once its labels are in, whether the canary
steps up, becomes the champion, or is rolled back."""

import dagster as dg

from mlplatform.datasets import Dataset
from mlplatform.datasets.dataset import PREDICTIONS_TABLE
from mlplatform.ml import registry
from mlplatform.ml.rollout import HELD, canary_evidence, judge
from mlplatform.orchestration.assets.common import (
    DUCKDB_POOL,
    ONE_RUN_PER_RANGE,
    asset_key,
    common,
    follow_new_periods,
    partitions,
    periods_check,
    run_logger,
    run_periods,
)
from mlplatform.orchestration.assets.serving import CHAMPION, champion_metadata, rollout_metadata
from mlplatform.orchestration.config import run_config, section_schema, with_overrides
from mlplatform.orchestration.resources.warehouse import Warehouse

ROLLOUT = "rollout"
CANARY_WITHIN_TOLERANCE = "canary_within_tolerance"


def rollout_asset(dataset: Dataset) -> dg.AssetsDefinition:
    key = asset_key(dataset, ROLLOUT)
    declared = dataset.declaration.rollout
    model_name = dataset.model.name

    @dg.asset(
        key=key,
        kinds={"duckdb"},
        pool=DUCKDB_POOL,  # writes the registry
        partitions_def=partitions(dataset),
        backfill_policy=ONE_RUN_PER_RANGE,
        deps=[asset_key(dataset, PREDICTIONS_TABLE)],
        automation_condition=follow_new_periods(dataset),
        config_schema=section_schema(declared, ["tolerance", "min_rows"]),
        check_specs=[
            dg.AssetCheckSpec(
                CANARY_WITHIN_TOLERANCE,
                asset=key,
                description="The canary's realised ROC AUC on its rows of the period is within rollout.tolerance "
                "of the champion's on the same rows; fails (WARN) on the period that rolled it back.",
            )
        ],
        description="During a rollout, the period's labelled rows that the canary served, each also scored by the "
        "champion: when there are at least rollout.min_rows, the canary steps up to the next share of "
        "rollout.steps (becoming the champion at the last) while its ROC AUC is within rollout.tolerance of the "
        "champion's on those rows, and is rolled back by itself when it is further below. Each decision is recorded "
        "in the registry's model_rollouts; a period scored at an earlier step, or with too few labels, decides "
        "nothing. Periods run together are judged oldest first, each against the rollout the one before left.",
        **common(dataset, "serving"),
    )
    def rollout(context: dg.AssetExecutionContext, duckdb: Warehouse):
        config = with_overrides(declared, run_config(context))
        outcomes = {}
        with duckdb.get_connection() as con, run_logger(context) as log:
            # In order: a period's decision changes the rollout the next period is judged against.
            for period in run_periods(context):
                decision, metadata = _decide(con, dataset, period, config, log)
                context.add_asset_metadata(metadata, partition_key=period)
                if decision and decision.event == registry.COMPLETED:
                    # The champion changed here, not in a champion_model run: record it there too, as the CLI does.
                    champion = champion_metadata(con, model_name)
                    context.log_event(
                        dg.AssetMaterialization(
                            asset_key(dataset, CHAMPION),
                            metadata=champion,
                            tags={"dagster/data_version": champion["champion_version"]},
                        )
                    )
                rolled_back = decision is not None and decision.event == registry.ROLLED_BACK
                outcomes[period] = (not rolled_back, decision.note if decision else "no canary is serving")
        yield dg.MaterializeResult()
        yield periods_check(CANARY_WITHIN_TOLERANCE, outcomes)

    return rollout


def _decide(con, dataset: Dataset, period: str, config, log) -> tuple[registry.RolloutStep | None, dict[str, object]]:
    """The rollout's decision on ``period`` (None when no canary is serving), recorded in the registry, and the
    period's metadata: the rollout after it, the decision and what it was measured on."""
    model_name = dataset.model.name
    serving = registry.rollout(con, model_name)
    decision = None
    if serving is not None:
        evidence = canary_evidence(con, dataset, period, serving)
        decision = judge(evidence, serving, period, config.tolerance, config.min_rows)
        if decision.event != HELD:
            try:
                registry.record_rollout_step(con, serving, decision)
            except registry.RegistryError as error:
                raise dg.Failure(str(error)) from error
        log.info("rollout decided", version=serving.version, decision=decision.event, why=decision.note)
    measured = {
        name: value
        for name in ("canary_roc_auc", "champion_roc_auc", "labelled_rows")
        if decision and (value := getattr(decision, name)) is not None
    }
    return decision, {
        **rollout_metadata(con, model_name),
        "decision": decision.event if decision else "no rollout",
        "why": decision.note if decision else "no canary is serving",
        **({"decided_on": serving.version, "decided_at_share": serving.share} if serving else {}),
        **measured,
        "tolerance": config.tolerance,
        "min_rows": config.min_rows,
    }
