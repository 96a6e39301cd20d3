"""The ``mlplatform`` command: fill the landing zone, materialize datasets headlessly, manage their models."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplatform.data.landing import LandingFileError
from mlplatform.data.versioning import DVCError
from mlplatform.datasets import DEFS_DIR, Dataset, DeclarationError, all_datasets, get_dataset
from mlplatform.datasets.periods import PeriodError
from mlplatform.ml.registry import REASONS, RegistryError

# dvc.yaml's stages, recorded in dvc.lock when the command runs them outside `dvc repro`.
SEED_STAGE = "seed"
PERIOD_STAGE = "{dataset}@{period}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlplatform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, run, dataset: str | None = "optional"):
        sub = commands.add_parser(name, help=help)
        if dataset:
            sub.add_argument(
                "--dataset",
                required=dataset == "required",
                help="a declared dataset (`mlplatform datasets`)" + ("" if dataset == "required" else "; default all"),
            )
        sub.set_defaults(run=run)
        return sub

    command("init", "create the Dagster home and the DVC repository with its default remote", lambda a: _init(), None)
    command("datasets", "list the declared datasets: periods, sources, what has landed and loaded", _datasets, None)
    seed = command("seed", "write each dataset's sample data as landing files, one per source and period", _seed)
    seed.add_argument("--partitions", help="periods to seed: 2013-01..2013-06, 2016 (default: the declared ones)")
    materialize = command(
        "materialize",
        "load, validate and featurise each period in order, then train, promote and score, on the configured "
        "Dagster instance",
        _materialize,
    )
    materialize.add_argument("--partitions", help="periods: 2013-01..2013-06, 2016 (default: every landed period)")
    versions = command("versions", "list the DVC versions the Dagster event log records", _versions)
    versions.add_argument("asset", nargs="?", help="an asset (clean_flights or flights/clean_flights); default all")
    versions.add_argument("--partition")
    restore = command("restore", "bring a version back from DVC and load it into the warehouse", _restore)
    restore.add_argument("asset", help="the asset, e.g. flights/clean_flights (or clean_flights with --dataset)")
    restore.add_argument("--version", required=True, help="the version's md5 (see `mlplatform versions`)")
    restore.add_argument("--partition")
    command("models", "list the model registry: every version of every model, its metrics and gate", _models)
    promote = command("promote", "make a registered model version its model's champion", _promote)
    promote.add_argument("version", help="the version's md5 or a unique prefix of it (see `mlplatform models`)")
    promote.add_argument("--reason", choices=REASONS, default="manual")
    promote.add_argument("--note", help="why, in words, kept with the promotion")
    command("rollback", "undo a champion's promotion: the previous champion returns", _rollback, "required")
    rollout = command(
        "rollout",
        "show a model's rollout: the canary, the share of rows it serves, each step and its realised ROC AUCs",
        _rollout,
        "required",
    )
    rollout.add_argument("--abort", action="store_true", help="stop the canary now; the champion serves every row")
    rollout.add_argument("--note", help="why, in words, kept with the abort")
    replay = command(
        "replay",
        "drip a dataset's periods into an empty platform one by one, with the real sensors, under four retraining "
        "policies (never, every period, on the drift signal, on the share of drifted features), and report each "
        "period and each policy",
        _replay,
    )
    replay.add_argument("--partitions", help="periods to replay (default: the declared seed periods)")
    replay.add_argument("--policies", help="comma-separated subset of never,periodic,drift,share (default: all four)")
    replay.add_argument("--initial-periods", type=int, default=2, help="periods the first model is trained on")
    replay.add_argument("--workdir", type=Path, help="where each policy's platform lives (default: a temp folder)")
    replay.add_argument("--output", type=Path, help="default reports/replay-<dataset>.json")
    replay.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    command(
        "backup",
        "write into the DVC remote what it needs to rebuild the platform alone: the reference and registry tables as "
        "versions, and a manifest of every version (after checking the remote holds each)",
        _backup,
        None,
    )
    recover = command(
        "recover",
        "rebuild an empty platform from a backup in the DVC remote: the versioned tables, the reference tables, the "
        "registry, each champion's artifact and the event log's record of every version",
        _recover,
        None,
    )
    recover.add_argument("--backup", help="a backup's name (default: the newest); --list shows them")
    recover.add_argument("--list", action="store_true", help="list the remote's backups and stop")
    command(
        "pools",
        "create each pool's concurrency limit at the instance's default, one after another: once after `dagster "
        "instance migrate` (two runs creating one pool at once on PostgreSQL can fail)",
        _pools,
        None,
    )
    gc = command("gc", "remove DVC objects that no version recorded in the event log references", _gc, None)
    gc.add_argument("--cloud", action="store_true", help="collect in the remote too")
    new = command("new-dataset", "scaffold a dataset folder from a sample file", _new_dataset, None)
    new.add_argument("name", help="the dataset's name: lower case letters, digits and _")
    new.add_argument("--sample", type=Path, required=True, help="a CSV or Parquet sample of the data")
    new.add_argument("--time-column", required=True, help="the column that places a row in its period")
    new.add_argument("--label", help="a 0/1 or boolean column the model predicts")
    new.add_argument("--grain", choices=("daily", "monthly", "yearly"), help="default: inferred from the sample")
    new.add_argument("--defs-dir", type=Path, default=DEFS_DIR, help=argparse.SUPPRESS)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (
        DVCError,
        LandingFileError,
        FileNotFoundError,
        FileExistsError,
        RegistryError,
        DeclarationError,
        PeriodError,
        KeyError,
        ValueError,
    ) as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        print(f"mlplatform {args.command}: {message}", file=sys.stderr)
        return 1


def selected(args: argparse.Namespace) -> list[Dataset]:
    """The dataset ``--dataset`` names, or every declared one."""
    name = getattr(args, "dataset", None)
    return [get_dataset(name)] if name else list(all_datasets().values())


def planned(args: argparse.Namespace, default) -> list[tuple[Dataset, list[str]]]:
    """Each selected dataset with the periods to act on: ``--partitions`` read in its grain, else
    ``default(dataset)``. Without ``--dataset``, a dataset of another grain is skipped, after saying so
    (``--partitions 2016`` applies to the yearly datasets); a spec no selected dataset can read is an error."""
    plan, skipped = [], []
    for dataset in selected(args):
        try:
            plan.append((dataset, dataset.periods.parse_spec(args.partitions) if args.partitions else default(dataset)))
        except PeriodError as error:
            skipped.append((dataset.name, error))
    if skipped and not plan:
        raise PeriodError("; ".join(f"{name}: {error}" for name, error in skipped))
    for name, error in skipped:
        print(f"{name}: skipped, {error}")
    return plan


def prepare_dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``./.dagster``), holding the project's ``dagster.yaml`` when it has none."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    shipped = Path("dagster.yaml")
    if not (home / "dagster.yaml").exists() and shipped.exists():
        shutil.copyfile(shipped, home / "dagster.yaml")
    return home


def _init() -> int:
    from mlplatform.logs import redact
    from mlplatform.orchestration.resources import resource

    home = prepare_dagster_home()
    repo = resource("dvc").repo()
    repo.ensure_initialised()
    print(f"Dagster home {home}; DVC repository {repo.root} with default remote {redact(repo.remote_url)}")
    return 0


def _seed(args: argparse.Namespace) -> int:
    from mlplatform.data.landing import seed
    from mlplatform.orchestration.resources import resource

    landing_dir = Path(resource("landing").path)
    for dataset, periods in planned(args, lambda dataset: dataset.seed_periods):
        if dataset.declaration.seed is None:
            print(f"{dataset.name}: declares no seed data; skipped")
            continue
        written = seed(landing_dir, dataset, periods)
        print(
            f"{dataset.name}: {len(written)} files written or changed in {landing_dir / dataset.name}, "
            f"{len(periods)} periods seeded"
        )
    resource("dvc").repo().record_stages([SEED_STAGE])
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from mlplatform.data.landing import scan
    from mlplatform.ml import registry
    from mlplatform.ml.training_set import periods_with_features
    from mlplatform.orchestration.resources import resource

    landing_dir = Path(resource("landing").path)
    with resource("duckdb").get_connection() as con:
        for dataset in all_datasets().values():
            found = scan(landing_dir, dataset)
            featured = sorted(periods_with_features(con, dataset), key=dataset.periods.index)
            champion = registry.champion(con, dataset.model.name)
            print(
                f"{dataset.name}: {dataset.periods.grain} from {dataset.periods.start} (open-ended); "
                f"sources {', '.join(dataset.sources)}"
                + (f"; reference {', '.join(dataset.reference)}" if dataset.reference else "")
            )
            print(f"  landed:   {_span(found.periods)}")
            print(f"  features: {_span(featured)}")
            print(f"  model {dataset.model.name}: champion {champion.version if champion else 'none yet'}")
            for path, reason in found.ignored.items():
                print(f"  not taken in: {path}: {reason}")
    return 0


def _span(periods: list[str]) -> str:
    if not periods:
        return "none"
    return f"{periods[0]}..{periods[-1]} ({len(periods)} periods)" if len(periods) > 1 else periods[0]


def _asset_key(asset: str, dataset: str | None):
    from mlplatform.catalog import as_key

    return as_key(f"{dataset}/{asset}" if dataset and "/" not in asset else asset)


def _versions(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.catalog import recorded_versions

    with DagsterInstance.get() as instance:
        if args.asset:
            keys = [_asset_key(args.asset, args.dataset)]
        else:
            names = {dataset.name for dataset in selected(args)}
            keys = sorted(key for key in instance.get_asset_keys() if key.path[0] in names)
        versions = [version for key in keys for version in recorded_versions(instance, key, args.partition)]
    if not versions:
        print(f"no recorded versions of {args.asset or 'any asset'}", file=sys.stderr)
        return 1
    print("asset                           partition  md5                               recorded at (UTC)    run id")
    for version in versions:
        when = version.recorded_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{version.asset:<31} {version.partition or '-':<10} {version.md5}  {when}  {version.run_id}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.catalog import recorded_versions
    from mlplatform.data.warehouse import replace_from_parquet
    from mlplatform.orchestration.assets.training import MODEL
    from mlplatform.orchestration.resources import resource

    key = _asset_key(args.asset, args.dataset)
    dataset_name, table = key.path[0], key.path[-1]
    if table == MODEL:
        print(f"{key.to_user_string()} is a model: `mlplatform promote` or `rollback` restore it", file=sys.stderr)
        return 1
    with DagsterInstance.get() as instance:
        matches = [v for v in recorded_versions(instance, key, args.partition) if v.md5 == args.version]
    if not matches:
        print(
            f"{key.to_user_string()}: no recorded version {args.version}; `mlplatform versions` lists them",
            file=sys.stderr,
        )
        return 1
    version = matches[0]
    resources = {name: resource(name) for name in ("dvc", "duckdb")}
    restored = resources["dvc"].repo().restore(args.version, version.path.rsplit("/", 1)[-1])
    with resources["duckdb"].get_connection() as con:
        rows = replace_from_parquet(con, get_dataset(dataset_name).table(table), version.partition, restored)
    where = f" [{version.partition}]" if version.partition else ""
    print(
        f"{key.to_user_string()}{where}: version {args.version} restored to {restored} and loaded into the "
        f"warehouse ({rows} rows)"
    )
    print("re-materialize downstream assets to rebuild them on it")
    return 0


def _models(args: argparse.Namespace) -> int:
    from mlplatform.ml import registry
    from mlplatform.orchestration.resources import resource

    names = [dataset.model.name for dataset in selected(args)]
    with resource("duckdb").get_connection() as con:
        rows = [
            (name, registry.champion(con, name), registry.rollout(con, name), registry.versions(con, name))
            for name in names
        ]
    if not any(versions for *_, versions in rows):
        print("no model versions registered yet: run a dataset's training job", file=sys.stderr)
        return 1
    print("model           version                               target      ROC AUC  gate    serves")
    for name, champion, canary, versions in rows:
        for model in versions:
            mark = "*" if champion and champion.version == model.version else ""
            if canary and canary.version == model.version:
                mark = f"canary {canary.share:.0%}"
            gate = "passed" if model.gate_passed else "failed"
            print(
                f"{name:<15} {model.version:<37} {model.target_period:<10}  {model.metrics['roc_auc']:.4f}   "
                f"{gate}  {mark}"
            )
    for name, _, canary, _ in rows:
        if canary:
            print(f"{name} rollout: {canary.describe()}; `mlplatform rollout` shows its steps")
    return 0


def _rollout(args: argparse.Namespace) -> int:
    from mlplatform.ml import registry
    from mlplatform.orchestration.resources import resource

    dataset = get_dataset(args.dataset)
    model = dataset.model.name
    if args.abort:
        note = f"aborted by hand: {args.note or 'no reason given'}"
        _change_champion(lambda con: (dataset, registry.abort_rollout(con, model, note)), "rollout aborted")
    with resource("duckdb").get_connection() as con:
        serving, history = registry.rollout(con, model), registry.rollout_history(con, model)
    print(f"{model} rollout: {serving.describe() if serving else 'none'}")
    if not history:
        print("no rollout yet: a model promoted after the first starts one")
        return 0
    print("event at (UTC)       event        version   period      share  canary AUC  champion AUC  rows    note")
    for event in history:
        aucs = [
            f"{event[name]:.4f}" if event[name] is not None else "-" for name in ("canary_roc_auc", "champion_roc_auc")
        ]
        print(
            f"{event['event_at']:%Y-%m-%d %H:%M:%S}  {event['event']:<12} {event['version'][:8]}  "
            f"{event['period'] or '-':<10}  {event['share']:>4.0%}   {aucs[0]:<10}  {aucs[1]:<12}  "
            f"{event['labelled_rows'] if event['labelled_rows'] is not None else '-':<6}  {event['note'] or ''}"
        )
    return 0


def _promote(args: argparse.Namespace) -> int:
    from mlplatform.ml import registry

    datasets = selected(args)

    def change(con):
        found = [
            (d, v.version)
            for d in datasets
            for v in registry.versions(con, d.model.name)
            if v.version.startswith(args.version)
        ]
        if len({d.name for d, _ in found}) > 1:
            raise RegistryError(f"{args.version!r} matches versions of several models: add --dataset")
        dataset = found[0][0] if found else datasets[0]
        version = registry.resolve_version(con, dataset.model.name, args.version)
        return dataset, registry.promote(con, dataset.model.name, version, args.reason, args.note)

    return _change_champion(change, "promoted")


def _rollback(args: argparse.Namespace) -> int:
    from mlplatform.ml import registry

    dataset = get_dataset(args.dataset)
    return _change_champion(lambda con: (dataset, registry.rollback(con, dataset.model.name)), "rolled back to")


def _change_champion(change, verb: str) -> int:
    """Apply ``change`` to the registry (a promotion, a rollback, a rollout aborted), make sure the champion's
    artifact is on disk (through DVC, from the remote if the cache lost it), and record the champion and its
    rollout as a ``champion_model`` materialization."""
    prepare_dagster_home()
    import dagster as dg

    from mlplatform.ml import registry
    from mlplatform.ml.artifact import artifact_folder
    from mlplatform.orchestration.assets.common import asset_key
    from mlplatform.orchestration.assets.serving import CHAMPION, champion_metadata
    from mlplatform.orchestration.resources import resource

    resources = {name: resource(name) for name in ("dvc", "duckdb")}
    with resources["duckdb"].get_connection() as con:
        dataset, changed = change(con)
        champion = registry.champion(con, dataset.model.name)
        artifact = artifact_folder(resources["dvc"].repo(), champion.version)
        metadata = champion_metadata(con, dataset.model.name)
    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key(dataset, CHAMPION), metadata=metadata, tags={"dagster/data_version": champion.version}
            )
        )
    if isinstance(changed, registry.Rollout):
        print(
            f"{dataset.model.name}: {verb}, {changed.version} serves no more; "
            f"champion {champion.version} serves every row"
        )
    else:
        print(f"{dataset.model.name}: champion {verb} {champion.version} ({champion.reason}); artifact at {artifact}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    import tempfile

    from mlplatform.replay import POLICIES, markdown_report, replay, write_report

    dataset = get_dataset(args.dataset or "flights")
    periods = dataset.periods.parse_spec(args.partitions) if args.partitions else dataset.seed_periods
    policies = tuple(policy.strip() for policy in args.policies.split(",")) if args.policies else POLICIES
    unknown = set(policies) - set(POLICIES)
    if unknown or args.initial_periods >= len(periods):
        print(f"mlplatform replay: unknown policies {sorted(unknown)} or too few periods", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mlplatform-replay-") as scratch:
        results = replay(dataset, args.workdir or Path(scratch), periods, policies, args.initial_periods)
    print("\npolicy    mean ROC AUC  retrains")
    for result in results:
        print(f"{result.policy:<9} {result.mean_roc_auc:.4f}        {result.retrains}")
    output = args.output or Path(f"reports/replay-{dataset.name}.json")
    print(f"report written to {write_report(dataset, results, output)}")
    if args.markdown:
        args.markdown.write_text(markdown_report(dataset, results))
    return 0


def _pools(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.orchestration.pools import initialize_pools

    with DagsterInstance.get() as instance:
        for pool, slots in initialize_pools(instance).items():
            print(f"{pool}: {slots} slots")
    return 0


def _gc(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.catalog import every_recorded_md5
    from mlplatform.orchestration.resources import resource

    with DagsterInstance.get() as instance:
        keep = every_recorded_md5(instance)
    resource("dvc").repo().collect_garbage(keep, cloud=args.cloud)
    where = "the cache and the remote" if args.cloud else "the cache"
    print(f"collected DVC garbage in {where}; kept the {len(keep)} versions the event log records")
    return 0


def _backup(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.orchestration.resources import resource
    from mlplatform.recovery import backup

    warehouse = resource("duckdb")
    with DagsterInstance.get() as instance:
        report = backup(instance, resource("dvc").repo(), warehouse.get_connection)
    print(
        f"backup written to {report.manifest}: {report.versions} recorded versions and {report.snapshots} reference "
        f"and registry tables, all in the remote ({report.seconds:.1f} s)"
    )
    return 0


def _recover(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.backup import backups
    from mlplatform.orchestration.resources import resource
    from mlplatform.recovery import recover

    repo = resource("dvc").repo()
    if args.list:
        print("\n".join(backups(repo)) or "no backups in the remote")
        return 0
    with DagsterInstance.get() as instance:
        report = recover(instance, repo, resource("duckdb").get_connection, args.backup)
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in report.seconds.items())
    print(
        f"recovered from {report.manifest}: {report.tables} table versions ({report.rows} rows) loaded, "
        f"{report.recorded} versions recorded in the event log ({phases})"
    )
    for model, version in report.champions.items():
        print(f"  {model}: champion {version}, artifact checked out")
    return 0


def _new_dataset(args: argparse.Namespace) -> int:
    from mlplatform.datasets.scaffold import scaffold_dataset

    folder = scaffold_dataset(args.defs_dir, args.name, args.sample, args.time_column, args.label, args.grain)
    print(
        f"dataset {args.name} written to {folder}: review contract.yaml, features.sql and defs.yaml, then "
        f"`mlplatform datasets` lists it and `dagster dev` serves it"
    )
    return 0


def _materialize(args: argparse.Namespace) -> int:
    """Per dataset: the reference job, then each period in order, then (when its periods exist) training and
    promotion, then scoring and monitoring of the periods by the champion, one run per range of consecutive
    periods. Stops at the first failure."""
    prepare_dagster_home()
    from dagster import DagsterInstance

    from mlplatform.data.landing import scan
    from mlplatform.definitions import build_definitions
    from mlplatform.orchestration.jobs import job_names
    from mlplatform.orchestration.resources import resource

    repo = resource("dvc").repo()
    landing_dir = Path(resource("landing").path)
    with DagsterInstance.get() as instance:
        # Built inside the instance's context: loading the components reads this instance's defs state storage,
        # not whichever one the calling process entered last.
        defs = build_definitions()
        for dataset, periods in planned(args, lambda dataset: scan(landing_dir, dataset).periods):
            names = job_names(dataset)
            if names.reference and _run(defs, instance, names.reference):
                return 1
            # The periods run are recorded in dvc.lock with one `dvc commit`, a failure's earlier periods too.
            ran = []
            for period in periods:
                if _run(defs, instance, names.periods, period):
                    repo.record_stages(ran)
                    return 1
                ran.append(PERIOD_STAGE.format(dataset=dataset.name, period=period))
            repo.record_stages(ran)
            if not _training_periods_present(dataset):
                continue
            if _run(defs, instance, names.training):
                return 1
            if any(_run(defs, instance, names.scoring, *span) for span in dataset.periods.ranges(periods)):
                return 1
    return 0


def _run(defs, instance, job_name: str, partition: str | None = None, last: str | None = None) -> bool:
    """Run one job (one partition of it, or the range ``partition``..``last``) in this process, tagged with it;
    whether it failed, after saying so.

    Runs a killed process left behind are reclaimed first: otherwise they would hold their pool slots forever."""
    from mlplatform.orchestration.dead_runs import in_process_run_tags, reclaim_dead_runs
    from mlplatform.orchestration.jobs import period_range_tags

    for dead in reclaim_dead_runs(instance):
        where = f" [{dead.tags['dagster/partition']}]" if "dagster/partition" in dead.tags else ""
        print(f"{dead.job_name}{where}: run {dead.run_id} lost its process; marked failed, its pool slots freed")
    ranged = last is not None and last != partition
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=None if ranged else partition,
        raise_on_error=False,
        tags={**in_process_run_tags(), **(period_range_tags(partition, last) if ranged else {})},
    )
    span = f"{partition}..{last}" if ranged else partition
    label = f"{job_name} [{span}]" if span else job_name
    if result.success:
        print(f"{label}: run {result.run_id} succeeded")
        return False
    failures = [event for event in result.all_events if event.is_step_failure]
    steps = [event.step_key for event in failures]
    print(f"{label}: run {result.run_id} failed at {steps or 'a blocking check'}", file=sys.stderr)
    for event in failures:
        print(f"  {event.step_key}: {_failure_message(event.step_failure_data)}", file=sys.stderr)
    return True


def _failure_message(failure) -> str:
    """A failed step's one line: a ``dg.Failure``'s description (a refused landing file names the file and the
    problem), else the first line of the error."""
    user = failure.user_failure_data
    if user is not None and user.description:
        return user.description
    error = failure.error.cause if failure.error.cause is not None else failure.error
    return error.message.strip().splitlines()[0]


def _training_periods_present(dataset: Dataset) -> bool:
    """Whether every period the training job needs has features; if not, say which are missing."""
    from mlplatform.ml.training_set import missing_periods
    from mlplatform.orchestration.jobs import job_names
    from mlplatform.orchestration.resources import resource

    training = dataset.declaration.training
    with resource("duckdb").get_connection() as con:
        missing = missing_periods(con, dataset, training.target_period, training.window_periods)
    if missing:
        print(
            f"{job_names(dataset).training}: skipped, {dataset.name} features have no rows for {', '.join(missing)} yet"
        )
    return not missing


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
