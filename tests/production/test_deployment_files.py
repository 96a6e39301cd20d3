"""Offline checks of the production deployment files under deploy/: no network, no container runtime, no cluster.

- deploy/compose.yaml against the Compose Specification's JSON schema (the copy check-jsonschema ships), and the
  topology: services, health checks, start order, shared volumes, and every variable the production profile reads.
- deploy/k8s/*.yaml against Kubernetes' schemas (kubernetes-validate ships them), and the pod settings in
  deploy/helm/values.yaml the same way; the Helm values carry every variable too, and mirror the instance.
- deploy/dagster.production.yaml through Dagster's own instance loading; deploy/celery.yaml through dagster-celery's.
- deploy/Dockerfile at lint level: multi-stage, non-root, the project installed editable from its source tree.

The Helm values are not checked against the chart's values.schema.json here: the chart is not on PyPI, and CI has
no network (docs/deployment.md says how that check was made by hand).
"""

from __future__ import annotations

import json
import re
import shlex
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# The production profile's contract (MLPLATFORM_ENV=production): everything it reads from the environment.
INSTANCE_VARS = {
    "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB",
    "DAGSTER_COMPUTE_LOGS_DIR",
}  # fmt: skip
WORKSPACE_VARS = {"DAGSTER_CODE_SERVER_HOST", "DAGSTER_CODE_SERVER_PORT"}
PLATFORM_VARS = INSTANCE_VARS | {
    "MLPLATFORM_ENV",
    "MLPLATFORM_EXECUTOR",
    "MLPLATFORM_CELERY_BROKER",
    "MLPLATFORM_CELERY_BACKEND",
    "MLPLATFORM_LAKE_CATALOG",
    "MLPLATFORM_LAKE_DATA_PATH",
    "MLPLATFORM_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "MLPLATFORM_LANDING_DIR",
    "MLPLATFORM_DVC_REPO",
    "MLPLATFORM_DVC_VERSIONS_DIR",
    "MLPLATFORM_DVC_REMOTE_URL",
    "MLPLATFORM_ALERT_WEBHOOK",
}
# Services that run the platform's code (sensors and run workers; steps) and those that only run Dagster.
CODE_SERVICES = ("code-server", "celery-worker-1", "celery-worker-2")
DAGSTER_SERVICES = ("instance-migrate", "webserver", "daemon")
ONE_SHOTS = ("minio-buckets", "instance-migrate")
CELERY_CONFIG_IN_IMAGE = "/opt/dagster/app/deploy/celery.yaml"
WORKSPACE_IN_IMAGE = "/opt/dagster/app/deploy/workspace.production.yaml"


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(DEPLOY / "compose.yaml")


@pytest.fixture(scope="module")
def helm() -> dict:
    return load_yaml(DEPLOY / "helm" / "values.yaml")


@pytest.fixture(scope="module")
def instance() -> dict:
    return load_yaml(DEPLOY / "dagster.production.yaml")


@pytest.fixture(scope="module")
def k8s_manifests() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in load_all_yaml(path)]


def env_refs(node) -> set[str]:
    """Every `{env: NAME}` in a Dagster config document."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_refs(value) for value in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_refs(value) for value in node)) if node else set()
    return set()


def command(service: dict) -> list[str]:
    value = service["command"]
    return value if isinstance(value, list) else shlex.split(value)


# ---------------------------------------------------------------------------------------------------------------
# compose
# ---------------------------------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification(compose):
    import jsonschema

    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_compose_runs_the_whole_topology(compose):
    services = compose["services"]
    assert set(services) == {
        "postgres", "redis", "minio", "minio-buckets", "instance-migrate",
        "code-server", "webserver", "daemon", "celery-worker-1", "celery-worker-2",
    }  # fmt: skip
    for name, service in services.items():
        assert name in ONE_SHOTS or "healthcheck" in service, f"{name} has no health check"
        assert service.get("restart") == ("no" if name in ONE_SHOTS else "unless-stopped"), name
        image = service["image"]
        assert not image.endswith(":latest") and ":" in image, f"{name}: pin the image's tag, not {image!r}"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            wanted = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} -> {dependency}"
    # Every Dagster process starts after the instance's tables exist.
    for name in (*CODE_SERVICES, "webserver", "daemon"):
        assert "instance-migrate" in services[name]["depends_on"], name
    # The UI has no login: published on the host's loopback only.
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    assert all("ports" not in s for n, s in services.items() if n != "webserver")


def test_compose_starts_each_process_as_the_contract_says(compose):
    services = compose["services"]
    assert command(services["code-server"])[:9] == [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "mlplatform.definitions",
    ]  # fmt: skip
    webserver = ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", WORKSPACE_IN_IMAGE]
    assert command(services["webserver"]) == webserver
    assert command(services["daemon"]) == ["dagster-daemon", "run", "-w", WORKSPACE_IN_IMAGE]
    for name in ("celery-worker-1", "celery-worker-2"):
        assert command(services[name])[:7] == [
            "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", CELERY_CONFIG_IN_IMAGE,
        ]  # fmt: skip
    # The webserver and the daemon reach the code through the code server, under the location name `mlplatform`.
    workspace = load_yaml(DEPLOY / "workspace.production.yaml")
    server = {
        "host": {"env": "DAGSTER_CODE_SERVER_HOST"},
        "port": {"env": "DAGSTER_CODE_SERVER_PORT"},
        "location_name": "mlplatform",
    }
    assert workspace == {"load_from": [{"grpc_server": server}]}
    for name in ("webserver", "daemon"):
        env = services[name]["environment"]
        assert (env["DAGSTER_CODE_SERVER_HOST"], env["DAGSTER_CODE_SERVER_PORT"]) == ("code-server", "4000"), name
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/workspace.production.yaml deploy/celery.yaml /opt/dagster/app/deploy/" in dockerfile


def test_compose_sets_every_variable_the_production_profile_reads(compose, instance):
    services = compose["services"]
    celery = load_yaml(DEPLOY / "celery.yaml")
    # The instance (every Dagster process) and the Celery settings read these through {env: ...}.
    assert env_refs(instance) == INSTANCE_VARS
    assert env_refs(celery) == {"MLPLATFORM_CELERY_BROKER", "MLPLATFORM_CELERY_BACKEND"}
    for name in CODE_SERVICES:
        assert services[name]["environment"]["MLPLATFORM_EXECUTOR"] == "celery", name
        missing = PLATFORM_VARS - set(services[name]["environment"])
        assert not missing, f"{name} lacks {sorted(missing)}"
    for name in DAGSTER_SERVICES:
        missing = INSTANCE_VARS - set(services[name]["environment"])
        assert not missing, f"{name} lacks {sorted(missing)}"
    for name in (*CODE_SERVICES, *DAGSTER_SERVICES):
        assert services[name]["environment"]["MLPLATFORM_ENV"] == "production", name


def test_compose_shares_the_landing_zone_and_dvc_repository(compose):
    services = compose["services"]
    for name in CODE_SERVICES:
        env = services[name]["environment"]
        mounts = dict(reversed(volume.split(":")[:2]) for volume in services[name]["volumes"])
        assert mounts.get(env["MLPLATFORM_LANDING_DIR"]) == "landing", name
        assert mounts.get(env["MLPLATFORM_DVC_REPO"]) == "dvc-repo", name
        assert Path(env["MLPLATFORM_DVC_VERSIONS_DIR"]).is_relative_to(env["MLPLATFORM_DVC_REPO"]), name
        assert mounts.get("/opt/dagster/compute_logs") == "compute-logs", name
    named = {volume.split(":")[0] for service in services.values() for volume in service.get("volumes", [])}
    assert named <= set(compose["volumes"])


# ---------------------------------------------------------------------------------------------------------------
# the instance and the Celery workers' settings, loaded by Dagster itself
# ---------------------------------------------------------------------------------------------------------------


def test_instance_loads_with_the_run_queue_limits_and_run_monitoring(instance, tmp_path):
    from dagster import DagsterInstance
    from dagster._core.instance.config import dagster_instance_config

    # The file as it is passes Dagster's instance schema (dagster-postgres is not needed for that).
    (tmp_path / "as_is").mkdir()
    (tmp_path / "as_is" / "dagster.yaml").write_text((DEPLOY / "dagster.production.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path / "as_is"))
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}

    # Every other setting, on a real instance: the same file with SQLite storage and a local log folder.
    local = {
        **instance,
        "storage": {"sqlite": {"base_dir": str(tmp_path / "storage")}},
        "compute_logs": {**instance["compute_logs"], "config": {"base_dir": str(tmp_path / "logs")}},
    }
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "dagster.yaml").write_text(yaml.safe_dump(local))
    with DagsterInstance.from_config(str(tmp_path / "local")) as dagster_instance:
        assert type(dagster_instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = dagster_instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 8
        assert {"key": "mlplatform/training", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
            queue.tag_concurrency_limits
        )
        # The DuckLake takes parallel writers: the warehouse pool is not the embedded default's one slot.
        assert dagster_instance.get_concurrency_config().pool_config.default_pool_limit == 4
        assert dagster_instance.run_monitoring_enabled
        assert dagster_instance.run_monitoring_max_runtime_seconds > 0  # the dead-run-worker backstop
        # A run failed by the monitoring frees its pool slots soon after.
        assert dagster_instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        # A run whose worker died is launched again once; a run whose step failed is not.
        assert dagster_instance.run_retries_enabled and dagster_instance.run_retries_max_retries == 1
        assert not dagster_instance.run_retries_retry_on_asset_or_op_failure
        assert dagster_instance.managed_python_loggers == ["mlplatform"]
    assert instance["telemetry"] == {"enabled": False}


def test_the_queues_limits_name_tags_the_jobs_set(instance):
    """A limit on a tag no run carries limits nothing: every mlplatform/* limit matches runs of real jobs."""
    from mlplatform.definitions import build_definitions
    from mlplatform.orchestration.jobs import DATASET_TAG, JOB_TAG, LANDING_TAG, TRAINING_TAG

    definitions = build_definitions("production")
    job_tags = [definitions.resolve_job_def(job.name).tags for job in definitions.jobs if job.name != "__ASSET_JOB"]
    limits = instance["concurrency"]["runs"]["tag_concurrency_limits"]
    ours = [limit for limit in limits if limit["key"].startswith("mlplatform/")]
    assert {limit["key"] for limit in ours} == {TRAINING_TAG, DATASET_TAG, JOB_TAG, LANDING_TAG}
    # The landing sensors' requests carry mlplatform/landing, not a job (tests/test_sensors.py checks them).
    for limit in (limit for limit in ours if limit["key"] != LANDING_TAG):
        value = limit.get("value")
        carried = [tags for tags in job_tags if limit["key"] in tags]
        if isinstance(value, str):
            carried = [tags for tags in carried if tags[limit["key"]] == value]
        assert carried, f"no job's runs carry {limit['key']}={value}"
    # Every job of every dataset says which dataset and which kind of job it is.
    assert all(DATASET_TAG in tags and JOB_TAG in tags for tags in job_tags)


def test_celery_worker_settings_resolve_broker_and_backend_from_the_environment(monkeypatch):
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("MLPLATFORM_CELERY_BROKER", "redis://redis:6379/0")
    monkeypatch.setenv("MLPLATFORM_CELERY_BACKEND", "redis://redis:6379/1")
    config = get_validated_config(str(DEPLOY / "celery.yaml"))
    assert (config["broker"], config["backend"]) == ("redis://redis:6379/0", "redis://redis:6379/1")


# ---------------------------------------------------------------------------------------------------------------
# Kubernetes: plain manifests and the Helm values
# ---------------------------------------------------------------------------------------------------------------


def validate_k8s(resource: dict) -> None:
    """Strict validation (unknown fields fail) against the newest Kubernetes schemas kubernetes-validate ships."""
    import kubernetes_validate

    kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_manifests_are_valid(k8s_manifests):
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in k8s_manifests} >= {
        ("Secret", "mlplatform-dagster-postgresql"),
        ("Secret", "mlplatform-env"),
        ("PersistentVolumeClaim", "mlplatform-landing"),
        ("PersistentVolumeClaim", "mlplatform-dvc"),
    }
    for doc in k8s_manifests:
        validate_k8s(doc)  # raises on any error, and SchemaNotFoundError for a kind it has no schema for
        if doc["kind"] == "PersistentVolumeClaim":
            # Step pods on any node mount the shared folders at once.
            assert doc["spec"]["accessModes"] == ["ReadWriteMany"], doc["metadata"]["name"]


def test_helm_pod_settings_are_valid_kubernetes(helm):
    """The env, volumes and security settings the chart copies into pods, inside a Pod kubernetes-validate checks."""
    code = helm["dagster-user-deployments"]["deployments"][0]
    container = {
        "name": "mlplatform",
        "image": f"{code['image']['repository']}:{code['image']['tag']}",
        "env": code["env"],
        "envFrom": [{"secretRef": secret} for secret in code["envSecrets"]],
        "volumeMounts": code["volumeMounts"],
        "securityContext": code["securityContext"],
        "resources": code["resources"],
    }
    spec = {"containers": [container], "volumes": code["volumes"], "securityContext": code["podSecurityContext"]}
    validate_k8s({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "code"}, "spec": spec})
    for component in ("dagsterWebserver", "dagsterDaemon"):
        pod = {
            "containers": [{"name": "c", "image": "i", "securityContext": helm[component]["securityContext"]}],
            "securityContext": helm[component]["podSecurityContext"],
        }
        validate_k8s({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}, "spec": pod})


def instance_scheme() -> str:
    return load_yaml(DEPLOY / "dagster.production.yaml")["storage"]["postgres"]["postgres_db"]["scheme"]


def helm_provided(helm: dict, k8s_manifests: list[dict]) -> set[str]:
    """The variables the code server's pods (and so every run and step pod) get from the Helm values."""
    code = helm["dagster-user-deployments"]["deployments"][0]
    secrets = {doc["metadata"]["name"]: doc for doc in k8s_manifests if doc["kind"] == "Secret"}
    provided = {item["name"] for item in code["env"]}
    for ref in code["envSecrets"]:
        provided |= set(secrets[ref["name"]]["stringData"])
    # The chart sets DAGSTER_PG_PASSWORD in every Dagster pod from this Secret's `postgresql-password`.
    if "postgresql-password" in secrets.get(helm["global"]["postgresqlSecretName"], {}).get("stringData", {}):
        provided.add("DAGSTER_PG_PASSWORD")
    return provided


def test_helm_values_set_every_variable_the_production_profile_reads(helm, k8s_manifests):
    code = helm["dagster-user-deployments"]["deployments"][0]
    assert helm["generatePostgresqlPasswordSecret"] is False  # the password Secret is deploy/k8s's
    # The chart renders its own dagster.yaml, so the compute logs' folder is the chart's business.
    assert PLATFORM_VARS - helm_provided(helm, k8s_manifests) == {"DAGSTER_COMPUTE_LOGS_DIR"}
    # Secrets stay in Secrets.
    plain = {item["name"] for item in code["env"]}
    assert plain.isdisjoint({"DAGSTER_PG_PASSWORD", "AWS_SECRET_ACCESS_KEY", "MLPLATFORM_LAKE_CATALOG"})
    env = {item["name"]: item.get("value") for item in code["env"]}
    assert env["MLPLATFORM_EXECUTOR"] == "k8s"
    postgres = helm["postgresql"]
    assert postgres["postgresqlScheme"] == instance_scheme()
    assert (env["DAGSTER_PG_HOST"], env["DAGSTER_PG_USER"], env["DAGSTER_PG_DB"], int(env["DAGSTER_PG_PORT"])) == (
        postgres["postgresqlHost"],
        postgres["postgresqlUsername"],
        postgres["postgresqlDatabase"],
        postgres["service"]["port"],
    )
    # The shared folders are the PVCs, mounted where the variables point.
    claims = {volume["name"]: volume["persistentVolumeClaim"]["claimName"] for volume in code["volumes"]}
    mounts = {mount["mountPath"]: claims[mount["name"]] for mount in code["volumeMounts"]}
    assert mounts[env["MLPLATFORM_LANDING_DIR"]] == "mlplatform-landing"
    assert mounts[env["MLPLATFORM_DVC_REPO"]] == "mlplatform-dvc"
    pvcs = {doc["metadata"]["name"] for doc in k8s_manifests if doc["kind"] == "PersistentVolumeClaim"}
    assert set(claims.values()) <= pvcs


def test_helm_values_mirror_the_production_instance(helm, instance):
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm["dagster-user-deployments"]["deployments"][0]["name"] == "mlplatform"  # the location's name
    assert helm["dagster-user-deployments"]["deployments"][0]["codeServerArgs"] == ["-m", "mlplatform.definitions"]
    assert helm["dagster-user-deployments"]["deployments"][0]["includeConfigInLaunchedRuns"] == {"enabled": True}
    coordinator = helm["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued), "limits belong under concurrency.runs"
    runs, pools = instance["concurrency"]["runs"], instance["concurrency"]["pools"]
    limits = {"maxConcurrentRuns": runs["max_concurrent_runs"], "tagConcurrencyLimits": runs["tag_concurrency_limits"]}
    assert helm["concurrency"] == {
        "enabled": True,
        "runs": limits,
        "pools": {"defaultLimit": pools["default_limit"], "granularity": pools["granularity"]},
    }
    monitoring, expected = helm["dagsterDaemon"]["runMonitoring"], instance["run_monitoring"]
    assert monitoring["enabled"] and monitoring["maxRuntimeSeconds"] == expected["max_runtime_seconds"]
    assert monitoring["freeSlotsAfterRunEndSeconds"] == expected["free_slots_after_run_end_seconds"]
    retries = instance["run_retries"]
    assert helm["dagsterDaemon"]["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    assert helm["pythonLogs"]["managedPythonLoggers"] == instance["python_logs"]["managed_python_loggers"]
    assert helm["telemetry"] == {"enabled": False}
    # The chart mounts its dagster.yaml over the image's, in the image's DAGSTER_HOME.
    assert f"DAGSTER_HOME={helm['global']['dagsterHome']}" in (DEPLOY / "Dockerfile").read_text()
    images = {helm[c]["image"]["repository"] for c in ("dagsterWebserver", "dagsterDaemon")}
    assert images == {helm["dagster-user-deployments"]["deployments"][0]["image"]["repository"]}  # one image
    assert helm["dagsterWebserver"]["service"]["port"] >= 1024  # a non-root process binds it


# ---------------------------------------------------------------------------------------------------------------
# the code and the deployment agree
# ---------------------------------------------------------------------------------------------------------------


def env_vars_read_by_the_code() -> set[str]:
    """Names passed to dg.EnvVar(...) anywhere in src/mlplatform: literals, or module constants holding them."""
    names = set()
    for path in (ROOT / "src" / "mlplatform").rglob("*.py"):
        text = path.read_text()
        constants = dict(re.findall(r'^([A-Z][A-Z0-9_]*)\s*=\s*"([A-Z][A-Z0-9_]*)"', text, flags=re.MULTILINE))
        names |= set(re.findall(r'EnvVar\(\s*"([A-Z][A-Z0-9_]*)"', text))
        by_constant = re.findall(r"EnvVar\(\s*([A-Z][A-Z0-9_]*)\s*\)", text)
        names |= {constants[name] for name in by_constant if name in constants}
    return names


def test_every_variable_the_code_reads_is_deployed(compose, helm, k8s_manifests):
    read = env_vars_read_by_the_code()
    assert read, "found no dg.EnvVar in src/mlplatform"
    assert read - set(compose["services"]["code-server"]["environment"]) == set(), "not set in deploy/compose.yaml"
    assert read - helm_provided(helm, k8s_manifests) == set(), "not set by deploy/helm/values.yaml and deploy/k8s"
    assert read - PLATFORM_VARS == set(), "read by the code, missing from the contract this file checks"


# ---------------------------------------------------------------------------------------------------------------
# Dockerfile, lint level
# ---------------------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments and parser directives dropped."""
    logical, current = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def test_dockerfile_is_multi_stage_non_root_and_runs_the_production_profile():
    instructions = dockerfile_instructions()
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) >= 2, "multi-stage: build in one stage, run in a slim one"
    assert re.fullmatch(r"\S+ AS builder", instructions[stages[0]][1], flags=re.IGNORECASE)
    final = instructions[stages[-1] :]
    final_args = [args for _, args in final]
    # The final stage takes the environments built in the builder and installs nothing with pip itself.
    assert any(op == "COPY" and args.startswith("--from=builder /opt/venv ") for op, args in final)
    assert not any(op == "RUN" and "pip install" in args for op, args in final)
    # Non-root: the last USER of the final stage, after every RUN of it.
    users = [i for i, (op, _) in enumerate(final) if op == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = final[users[-1]][1].split(":")[0]
    assert user not in {"root", "0"}
    assert all(op != "RUN" for op, _ in final[users[-1] :]), "RUN after USER: move it before, or it runs as the user"
    env = " ".join(args for op, args in final if op == "ENV")
    assert "MLPLATFORM_ENV=production" in env
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    assert any(op == "COPY" and args.endswith("/opt/dagster/dagster_home/dagster.yaml") for op, args in final)
    # Exec form, so signals reach the process (tini forwards them to the whole group).
    for op in ("ENTRYPOINT", "CMD"):
        (args,) = [args for name, args in final if name == op]
        assert isinstance(json.loads(args), list), op
    assert not any(op == "ADD" for op, _ in instructions), "COPY, not ADD"
    assert "apt-get" not in " ".join(final_args) or "rm -rf /var/lib/apt/lists/*" in " ".join(final_args)


def test_dockerfile_installs_the_project_editable_from_its_source_tree():
    instructions = dockerfile_instructions()
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "pip install -r requirements.lock" in runs
    assert "pip install -r requirements-dvc.lock" in runs and "dvc[s3]" not in runs
    # load_from_defs_folder needs pyproject.toml ([tool.dg]) above the package: an editable install of the tree.
    assert "pip install --no-deps --no-build-isolation -e ." in runs
    assert any(op == "COPY" and args == "--from=builder /opt/dagster/app /opt/dagster/app" for op, args in instructions)
    ignored = {line.strip().rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()}
    for op, args in instructions:
        if op == "COPY" and not args.startswith("--from="):
            *sources, _ = [part for part in args.split() if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert source.split("/")[0] not in ignored, f"COPY {source}: excluded by Dockerfile.dockerignore"
