"""The model registry on its own: versions, the promotion stack, the gate, challengers."""

import duckdb
import pytest

from mlplatform import registry
from mlplatform.registry import ModelVersion, RegistryError


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def _register(con, version, roc_auc=0.7, passed=True, target="2013-07"):
    registry.register(
        con,
        ModelVersion(version, target, "2013-01..2013-06", f"data-{version}", {"roc_auc": roc_auc}, passed, "why"),
    )


def test_promotions_stack_and_rollback_returns_the_previous_champion(con):
    assert registry.champion(con) is None
    _register(con, "a.dir")
    _register(con, "b.dir")
    first = registry.promote(con, "a.dir", "manual", note="first")
    second = registry.promote(con, "b.dir", "drift")
    assert (second.version, second.reason, second.previous_version) == ("b.dir", "drift", "a.dir")
    assert registry.champion(con).version == "b.dir"

    restored = registry.rollback(con)
    assert restored.version == "a.dir" and restored.promoted_at == first.promoted_at and restored.note == "first"
    history = registry.promotion_history(con)
    assert [(row["version"], row["rolled_back_at"] is not None) for row in history] == [
        ("b.dir", True),
        ("a.dir", False),
    ]
    with pytest.raises(RegistryError, match="first champion"):
        registry.rollback(con)
    assert registry.champion(con).version == "a.dir"  # the refused rollback changed nothing


def test_promotion_refuses_unknown_versions_failed_gates_and_unknown_reasons(con):
    _register(con, "good.dir")
    _register(con, "bad.dir", passed=False)
    with pytest.raises(RegistryError, match="not registered"):
        registry.promote(con, "nope.dir", "manual")
    with pytest.raises(RegistryError, match="failed its gate"):
        registry.promote(con, "bad.dir", "manual")
    with pytest.raises(RegistryError, match="reason must be one of"):
        registry.promote(con, "good.dir", "because")
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback(con)
    assert registry.champion(con) is None


def test_promoting_the_champion_again_changes_nothing(con):
    _register(con, "a.dir")
    registry.promote(con, "a.dir", "manual")
    registry.promote(con, "a.dir", "scheduled")
    assert len(registry.promotion_history(con)) == 1


def test_the_challenger_is_the_newest_version_that_is_not_champion(con):
    _register(con, "a.dir")
    assert registry.challenger(con).version == "a.dir"  # no champion yet: the newest version shadows nothing
    registry.promote(con, "a.dir", "manual")
    assert registry.challenger(con) is None
    _register(con, "b.dir", roc_auc=0.6, passed=False)
    assert registry.challenger(con).version == "b.dir"
    assert registry.get_version(con, "b.dir").gate_passed is False


def test_re_registering_keeps_one_row_with_the_new_evaluation(con):
    _register(con, "a.dir", roc_auc=0.7)
    _register(con, "a.dir", roc_auc=0.71)
    [model] = registry.versions(con)
    assert model.metrics == {"roc_auc": 0.71} and model.registered_at is not None


def test_a_version_is_named_by_any_unique_prefix(con):
    _register(con, "abc1.dir")
    _register(con, "abd2.dir")
    assert registry.resolve_version(con, "abc") == "abc1.dir"
    with pytest.raises(RegistryError, match="2 versions"):
        registry.resolve_version(con, "ab")
    with pytest.raises(RegistryError, match="no registered version"):
        registry.resolve_version(con, "zz")
