"""The Dagster UI in a real browser: `dagster dev` on a populated temp instance, driven by Playwright in headless
Chromium, step by step as a user would go: the lineage of every group (one per dataset), the flights model's page
(metadata, training curve, upstream lineage), a materialization launched from the UI, the promotion gate's result,
and the sensors.

What the test expects comes from the platform's definitions (``mlplatform.definitions.build_definitions``: every
declared dataset's groups, assets, checks, sensors), so it follows new assets and datasets. The instance holds the
flights dataset's first two months and a small flights model. Screenshots of each view go to
``$MLPLATFORM_SCREENSHOTS`` (default: a pytest temp folder): lineage.png, flights_model.png (with
flights_model_lineage.png), run.png, check.png, sensors.png.

Needs Chromium: Debian's ``chromium`` package (``apt-get install chromium``; ``.ci/run`` installs it), or set
``MLPLATFORM_CHROMIUM`` to a Chromium binary; ``playwright install`` is not needed. Without one the tests skip.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dagster as dg
import pytest
from conftest import git_project
from dagster_dev import dagster_dev, graphql

from mlplatform.cli import main
from mlplatform.data.landing import seed
from mlplatform.datasets import get_dataset
from mlplatform.datasets.dataset import TRAINING_SET_TABLE
from mlplatform.definitions import build_definitions
from mlplatform.orchestration.assets.common import asset_key
from mlplatform.orchestration.assets.evaluation import EVALUATION, PROMOTION_GATE
from mlplatform.orchestration.assets.training import MODEL as MODEL_ASSET
from mlplatform.orchestration.jobs import job_names

try:
    from playwright.sync_api import expect
except ImportError:  # the tests skip: see the chromium fixture
    expect = None

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM_HINT = (
    "Chromium for Playwright: `apt-get install chromium` (Debian; `.ci/run` does it), or set MLPLATFORM_CHROMIUM "
    "to a Chromium binary"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLIGHTS = get_dataset("flights")
PERIODS = ["2013-01", "2013-02"]
TRAINING_JOB = job_names(FLIGHTS).training
MODEL_KEY = asset_key(FLIGHTS, MODEL_ASSET)
# A model trained on January and held out on February: small enough for a few seconds on two cores.
SMALL_TRAINING = {
    "ops": {
        asset_key(FLIGHTS, TRAINING_SET_TABLE).to_python_identifier(): {
            "config": {"target_period": "2013-02", "window_periods": 1}
        },
        MODEL_KEY.to_python_identifier(): {
            "config": {"hidden": [32], "max_epochs": 3, "batch_size": 256, "learning_rate": 0.003}
        },
    }
}
MODEL = MODEL_KEY.to_user_string()  # flights/model
ROOT_ASSET = "flights/raw_flights"
# A cheap asset to materialize from the UI: a reference table, no partitions, no config.
CHEAP_ASSET = "flights/airlines"
# The check the UI must show: the training run's blocking gate on the flights model's evaluation.
GATE = (asset_key(FLIGHTS, EVALUATION).to_user_string(), PROMOTION_GATE)
RUN_TIMEOUT_S = 150
UI_TIMEOUT_MS = 30_000
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
# The community sign-up dialog dagster dev shows on localhost, dismissed as the UI itself remembers it.
DISMISS_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"

RUN_STATUS = "query RunStatus($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"
SENSOR_STATES = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { status } } } } } }"""


@cache
def definitions() -> dg.Definitions:
    """The platform's definitions, as the code location serves them (every declared dataset)."""
    return build_definitions()


def node_label(key: str) -> str:
    """What the asset graph writes on a node: the last part of its key (``flights/raw_flights`` -> ``raw_flights``)."""
    return key.rsplit("/", 1)[-1]


def ui_name(key: str) -> str:
    """How the UI writes a whole key in run headers and event logs: ``flights/airlines`` -> ``flights / airlines``."""
    return " / ".join(dg.AssetKey.from_user_string(key).path)


@dataclass(frozen=True)
class Platform:
    """`dagster dev` serving a temp instance that holds two flights months and a trained, evaluated model."""

    port: int
    model_metadata: dict[str, object]
    checks: dict[tuple[str, str], bool]  # (asset, check) -> passed, as the training run evaluated them

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _chromium_executable(sync_api) -> str | None:
    candidates = [os.environ.get("MLPLATFORM_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    try:
        with sync_api.sync_playwright() as playwright:  # a browser from `playwright install`, where that works
            bundled = playwright.chromium.executable_path
    except Exception:  # the driver itself cannot start: no browser either way
        return None
    return bundled if Path(bundled).is_file() else None


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary to drive; skips the module (before any setup) when there is none."""
    reason = f"playwright is not installed (`make install`); the test also needs {CHROMIUM_HINT}"
    sync_api = pytest.importorskip("playwright.sync_api", reason=reason)
    executable = _chromium_executable(sync_api)
    if executable is None:
        pytest.skip(f"no browser: install {CHROMIUM_HINT}")
    return executable


@pytest.fixture(scope="module")
def browser(chromium, platform):
    """Headless Chromium, started after the platform: Dagster's in-process runs are not to share Playwright's loop."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MLPLATFORM_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    print(f"\nscreenshots of the Dagster UI: {folder}")


@pytest.fixture(scope="module")
def platform(chromium, tmp_path_factory) -> Iterator[Platform]:
    """Two flights months landed and materialized, a small flights model trained and evaluated, then `dagster dev`
    on top."""
    project = git_project(tmp_path_factory.mktemp("browser") / "project")
    env = {"MLPLATFORM_DATA_DIR": str(project / "data"), "DAGSTER_HOME": str(project.parent / "dagster_home")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        seed(project / "data" / "landing", FLIGHTS, PERIODS)
        assert main(["materialize", "--dataset", FLIGHTS.name, "--partitions", f"{PERIODS[0]}..{PERIODS[-1]}"]) == 0
        with dg.DagsterInstance.get() as instance:
            result = (
                build_definitions()
                .resolve_job_def(TRAINING_JOB)
                .execute_in_process(instance=instance, run_config=SMALL_TRAINING, raise_on_error=False)
            )
    failures = [event.message for event in result.all_events if event.is_step_failure]
    node = MODEL_KEY.to_python_identifier()
    assert result.asset_materializations_for_node(node), f"{TRAINING_JOB} did not train {MODEL}: {failures}"
    [model] = result.asset_materializations_for_node(node)
    checks = {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }
    metadata = {key: value.value for key, value in model.metadata.items()}
    with dagster_dev(Path(env["DAGSTER_HOME"]), env=env) as port:
        yield Platform(port=port, model_metadata=metadata, checks=checks)


@pytest.fixture
def page(browser, platform):
    context = browser.new_context(base_url=platform.url, viewport={"width": 1600, "height": 1000})
    context.add_init_script(DISMISS_COMMUNITY_DIALOG)
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)  # assertions wait as long as actions: two busy cores are slow
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def _shown(name: str, labels: list[str]) -> bool:
    """Whether a graph shows ``name``: whole, or cut in the middle as small nodes show long names (``fligh…ions``)."""
    for label in labels:
        head, cut, tail = label.partition("…")
        if label == name or (
            cut and len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail)
        ):
            return True
    return False


def _graph_labels(page) -> list[str]:
    """The text of every leaf element drawn in the graph's SVG nodes."""
    return page.locator("svg foreignObject *").evaluate_all(
        "els => els.filter(e => e.children.length === 0).map(e => e.textContent.trim()).filter(Boolean)"
    )


def _ancestors(key: dg.AssetKey) -> dict[str, int]:
    """Every asset upstream of ``key``, with its distance from it (the lineage depth that first shows it)."""
    graph = definitions().resolve_asset_graph()
    distance: dict[dg.AssetKey, int] = {}
    level, frontier = 0, {key}
    while frontier:
        level += 1
        frontier = {parent for child in frontier for parent in graph.get(child).parent_keys if parent not in distance}
        distance.update(dict.fromkeys(frontier, level))
    return {asset.to_user_string(): depth for asset, depth in distance.items()}


def test_the_lineage_shows_every_group_and_asset(page, platform, screenshots):
    specs = definitions().resolve_all_asset_specs()
    groups = sorted({spec.group_name for spec in specs if spec.group_name})
    assets = sorted(spec.key.to_user_string() for spec in specs)
    assert {ROOT_ASSET, MODEL} <= set(assets)
    assert {"flights", "employment"} <= set(groups)  # a group per declared dataset

    page.goto("/asset-groups")
    graph = page.locator("svg")
    # The global lineage opens with each group collapsed to one node.
    expect(graph.get_by_text(groups[0], exact=True).first).to_be_visible()
    labels = _graph_labels(page)
    assert [group for group in groups if not _shown(group, labels)] == [], labels

    # The graph's settings menu expands every group; the graph fits the whole of it.
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
    page.keyboard.press("Escape")
    expect(page.get_by_role("menuitem")).to_have_count(0)
    for name in (ROOT_ASSET, MODEL):
        expect(graph.get_by_text(node_label(name), exact=True).first).to_be_visible()
    labels = _graph_labels(page)
    assert [asset for asset in assets if not _shown(node_label(asset), labels)] == [], labels
    page.screenshot(path=screenshots / "lineage.png")


def test_the_model_page_shows_metadata_the_training_curve_and_lineage(page, platform, screenshots):
    metadata = platform.model_metadata
    page.goto(f"/assets/{MODEL}")

    def metadata_row(key: str):
        return page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))

    auc = metadata_row("holdout_roc_auc")
    expect(auc).to_be_visible()
    expect(auc).to_contain_text(str(metadata["holdout_roc_auc"])[:6])

    curve_text = str(metadata["training_curve"])
    curve = metadata_row("training_curve")
    expect(curve).to_be_visible()
    if "](data:image/" in curve_text:
        # A plot: long markdown sits behind "[Show Markdown]" and opens in a dialog; short renders in the table.
        show = curve.get_by_text("[Show Markdown]")
        if show.count():
            show.click()
            image = page.get_by_role("dialog").locator("img")
        else:
            image = curve.locator("img")
        expect(image.first).to_be_visible()
        assert image.first.evaluate("img => img.complete && img.naturalWidth > 0"), "the training curve did not load"
        assert image.first.get_attribute("src").startswith("data:image/")
    else:  # the markdown table of epochs and losses
        expect(curve).to_contain_text("validation_loss")
    page.screenshot(path=screenshots / "flights_model.png")
    page.keyboard.press("Escape")

    # The Lineage tab, upstream, at the depth that reaches every ancestor: "All" has nothing more to add.
    upstream = _ancestors(MODEL_KEY)
    assert ROOT_ASSET in upstream
    depth = max(upstream.values())
    page.goto(f"/assets/{MODEL}?view=lineage&lineageScope=upstream&lineageDepth={depth}")
    expect(page.get_by_role("button", name="All", exact=True)).to_be_disabled()
    graph = page.locator("svg")
    expect(graph.get_by_text(node_label(ROOT_ASSET), exact=True).first).to_be_visible()
    labels = _graph_labels(page)
    assert [asset for asset in sorted(upstream) if not _shown(node_label(asset), labels)] == [], labels
    expect(graph.get_by_text(re.compile(r"^Loading"))).to_have_count(0)  # each node's latest event
    page.screenshot(path=screenshots / "flights_model_lineage.png")


def test_a_materialization_launched_from_the_ui_succeeds(page, platform, screenshots):
    page.goto(f"/assets/{CHEAP_ASSET}")
    page.get_by_role("button", name=re.compile(r"(^|\s)Materialize$")).click()
    # The toast says "Launched run <id>" and links to the run.
    page.get_by_role("region", name=re.compile("Notifications")).get_by_role("link", name="View").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)

    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while status not in TERMINAL_RUN_STATUSES and time.monotonic() < deadline:
        time.sleep(2)
        status = graphql(platform.port, RUN_STATUS, {"runId": run_id})["data"]["runOrError"].get("status")
    page.reload()
    if status != "SUCCESS":
        page.screenshot(path=screenshots / "run.png")
        pytest.fail(f"run {run_id} of {CHEAP_ASSET} ended {status}: see run.png")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text(ui_name(CHEAP_ASSET), exact=True).first).to_be_visible()
    # Once its logs load, the run's step list counts the succeeded steps.
    expect(page.get_by_text(re.compile(r"^Succeeded \([1-9]\d*\)$"))).to_be_visible()
    expect(page.get_by_text("Loading run logs")).to_have_count(0)
    page.screenshot(path=screenshots / "run.png")


def test_an_asset_check_shows_its_result(page, platform, screenshots):
    # The training run's blocking gate on the model's evaluation, passed or failed as the run evaluated it.
    assert GATE in platform.checks, f"the training run did not evaluate {GATE}: {sorted(platform.checks)}"
    (asset, check), passed = GATE, platform.checks[GATE]
    page.goto(f"/assets/{asset}?view=checks")
    page.get_by_text(check, exact=True).first.click()  # in the list of the asset's checks
    expect(page.get_by_text("Latest execution")).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Passed" if passed else "Failed", exact=True).first).to_be_visible()
    page.screenshot(path=screenshots / "check.png")


def test_the_automation_page_shows_each_sensor_and_its_state(page, platform, screenshots):
    sensors = sorted(sensor.name for sensor in definitions().get_repository_def().sensor_defs)
    # Each dataset's landing and drift retrain sensors, and the platform's own.
    assert {"flights_landing_sensor", "flights_drift_retrain_sensor", "employment_landing_sensor"} <= set(sensors)
    assert {"run_failure_alert_sensor", "follow_new_data_sensor"} <= set(sensors)
    nodes = graphql(platform.port, SENSOR_STATES)["data"]["repositoriesOrError"]["nodes"]
    states = {sensor["name"]: sensor["sensorState"]["status"] for node in nodes for sensor in node["sensors"]}
    assert sorted(states) == sensors

    page.goto("/automation")
    for name in sensors:
        link = page.locator(f'a[href$="/sensors/{name}"]')
        expect(link).to_be_visible()
        # The sensor's row: the innermost element holding its link and checkboxes (select, then the on/off switch).
        row = page.locator("div").filter(has=link).filter(has=page.get_by_role("checkbox")).last
        switch = row.get_by_role("checkbox").last
        expect(switch).to_be_enabled()  # disabled while the sensor's state loads
        expect(switch).to_be_checked(checked=states[name] == "RUNNING")
    page.screenshot(path=screenshots / "sensors.png")
