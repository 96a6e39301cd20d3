"""The model registry on its own: versions, the promotion stack, the gate, challengers, one registry per model."""

import duckdb
import pytest

from mlplatform.ml import registry
from mlplatform.ml.registry import ModelVersion, RegistryError

MODEL = "flights_delay"


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def _register(con, version, roc_auc=0.7, passed=True, target="2013-07", model=MODEL, window="2013-01..2013-06"):
    registry.register(
        con,
        ModelVersion(
            model=model,
            version=version,
            target_period=target,
            window=window,
            training_data_version=f"data-{version}",
            metrics={"roc_auc": roc_auc},
            gate_passed=passed,
            gate_reason="why",
        ),
    )


def test_promotions_stack_and_rollback_returns_the_previous_champion(con):
    assert registry.champion(con, MODEL) is None
    _register(con, "a.dir")
    _register(con, "b.dir")
    first = registry.promote(con, MODEL, "a.dir", "manual", note="first")
    second = registry.promote(con, MODEL, "b.dir", "drift")
    assert (second.model, second.version, second.reason, second.previous_version) == (MODEL, "b.dir", "drift", "a.dir")
    assert registry.champion(con, MODEL).version == "b.dir"

    restored = registry.rollback(con, MODEL)
    assert restored.version == "a.dir" and restored.promoted_at == first.promoted_at and restored.note == "first"
    history = registry.promotion_history(con, MODEL)
    assert [(row["version"], row["rolled_back_at"] is not None) for row in history] == [
        ("b.dir", True),
        ("a.dir", False),
    ]
    with pytest.raises(RegistryError, match="first champion"):
        registry.rollback(con, MODEL)
    assert registry.champion(con, MODEL).version == "a.dir"  # the refused rollback changed nothing


def test_promotion_refuses_unknown_versions_failed_gates_and_unknown_reasons(con):
    _register(con, "good.dir")
    _register(con, "bad.dir", passed=False)
    with pytest.raises(RegistryError, match="not registered"):
        registry.promote(con, MODEL, "nope.dir", "manual")
    with pytest.raises(RegistryError, match="failed its gate"):
        registry.promote(con, MODEL, "bad.dir", "manual")
    with pytest.raises(RegistryError, match="reason must be one of"):
        registry.promote(con, MODEL, "good.dir", "because")
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback(con, MODEL)
    assert registry.champion(con, MODEL) is None


def test_promoting_the_champion_again_changes_nothing(con):
    _register(con, "a.dir")
    registry.promote(con, MODEL, "a.dir", "manual")
    registry.promote(con, MODEL, "a.dir", "scheduled")
    assert len(registry.promotion_history(con, MODEL)) == 1


def test_the_challenger_is_the_newest_version_that_is_not_champion(con):
    _register(con, "a.dir")
    assert registry.challenger(con, MODEL).version == "a.dir"  # no champion yet: the newest version shadows nothing
    registry.promote(con, MODEL, "a.dir", "manual")
    assert registry.challenger(con, MODEL) is None
    _register(con, "b.dir", roc_auc=0.6, passed=False)
    assert registry.challenger(con, MODEL).version == "b.dir"
    assert registry.get_version(con, MODEL, "b.dir").gate_passed is False


def test_re_registering_keeps_one_row_with_the_new_evaluation(con):
    _register(con, "a.dir", roc_auc=0.7)
    _register(con, "a.dir", roc_auc=0.71)
    [model] = registry.versions(con, MODEL)
    assert model.metrics == {"roc_auc": 0.71} and model.registered_at is not None
    assert (model.model, model.target_period, model.window) == (MODEL, "2013-07", "2013-01..2013-06")


def test_a_version_is_named_by_any_unique_prefix(con):
    _register(con, "abc1.dir")
    _register(con, "abd2.dir")
    assert registry.resolve_version(con, MODEL, "abc") == "abc1.dir"
    with pytest.raises(RegistryError, match="2 versions"):
        registry.resolve_version(con, MODEL, "ab")
    with pytest.raises(RegistryError, match="no registered version"):
        registry.resolve_version(con, MODEL, "zz")


def test_two_models_registries_are_independent(con):
    """Each model name has its own versions, champion, challenger and promotion stack."""
    _register(con, "f1.dir")
    _register(con, "f2.dir")
    _register(con, "e1.dir", model="employment", target="2016", window="2015..2015")
    _register(con, "e2.dir", model="employment", target="2017", window="2016..2016")
    assert {entry.version for entry in registry.versions(con, MODEL)} == {"f1.dir", "f2.dir"}
    assert {entry.version for entry in registry.versions(con, "employment")} == {"e1.dir", "e2.dir"}
    assert len(registry.versions(con)) == 4  # no model given: every model's versions

    registry.promote(con, MODEL, "f1.dir", "manual")
    assert registry.champion(con, "employment") is None  # promoting one model crowns nothing in the other
    registry.promote(con, "employment", "e1.dir", "manual")
    registry.promote(con, "employment", "e2.dir", "drift")
    registry.promote(con, MODEL, "f2.dir", "scheduled")
    employment, flights = registry.champion(con, "employment"), registry.champion(con, MODEL)
    assert (employment.model, employment.version, employment.previous_version) == ("employment", "e2.dir", "e1.dir")
    assert (flights.model, flights.version, flights.previous_version) == (MODEL, "f2.dir", "f1.dir")

    assert registry.rollback(con, MODEL).version == "f1.dir"
    assert registry.champion(con, "employment").version == "e2.dir"  # the other model's champion stays
    assert [row["rolled_back_at"] is None for row in registry.promotion_history(con, "employment")] == [True, True]
    assert [row["version"] for row in registry.promotion_history(con, MODEL)] == ["f2.dir", "f1.dir"]
    assert {row["model"] for row in registry.promotion_history(con, MODEL)} == {MODEL}
    assert registry.rollback(con, "employment").version == "e1.dir"
    assert registry.champion(con, MODEL).version == "f1.dir"
    with pytest.raises(RegistryError, match="first champion"):
        registry.rollback(con, MODEL)  # f1 is flights' first champion, whatever employment's stack holds


def test_versions_are_looked_up_within_their_model(con):
    _register(con, "shared.dir")
    _register(con, "emp.dir", model="employment", passed=False)
    assert registry.get_version(con, "employment", "shared.dir") is None
    with pytest.raises(RegistryError, match="not registered"):
        registry.promote(con, "employment", "shared.dir", "manual")  # registered, but for another model
    assert registry.resolve_version(con, MODEL, "sh") == "shared.dir"
    with pytest.raises(RegistryError, match="no registered version"):
        registry.resolve_version(con, MODEL, "emp")
    # The same artifact md5 may be registered under two names: two rows, each with its own gate.
    _register(con, "shared.dir", model="employment", passed=False)
    assert registry.get_version(con, MODEL, "shared.dir").gate_passed is True
    assert registry.get_version(con, "employment", "shared.dir").gate_passed is False
    assert registry.challenger(con, "employment").model == "employment"
