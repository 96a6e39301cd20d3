"""Launchpad config from the declaration: each section's declared values become a run's defaults.

The declaration's pydantic models are the one place a parameter is defined. A run may override a value in
the Launchpad; the override is validated by the same model (bounds included) before the run uses it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import dagster as dg
from pydantic import BaseModel, ValidationError

Section = TypeVar("Section", bound=BaseModel)


def config_schema(values: dict[str, Any], descriptions: dict[str, str | None] | None = None) -> dict[str, dg.Field]:
    """Optional config fields defaulting to ``values`` (their types follow the values)."""
    descriptions = descriptions or {}
    return {
        name: dg.Field(_config_type(value), default_value=value, is_required=False, description=descriptions.get(name))
        for name, value in values.items()
    }


def section_schema(section: BaseModel, names: list[str] | None = None) -> dict[str, dg.Field]:
    """Config fields for a declaration section (the ``names`` given, or all of it)."""
    names = names or list(type(section).model_fields)
    fields = type(section).model_fields
    return config_schema(
        {name: getattr(section, name) for name in names}, {name: fields[name].description for name in names}
    )


def with_overrides(section: Section, overrides: dict[str, Any]) -> Section:
    """``section`` with a run's config applied, validated again by the section's own model."""
    try:
        return type(section).model_validate({**section.model_dump(), **overrides})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise dg.Failure(f"run config rejected: {problems}") from None


def _config_type(value: Any) -> Any:
    if isinstance(value, list):
        return [type(value[0]) if value else str]
    return type(value)


def run_config(context: dg.AssetExecutionContext) -> dict[str, Any]:
    """What the run's config sets for this step (nothing set: the declaration's values hold)."""
    return context.op_execution_context.op_config or {}
