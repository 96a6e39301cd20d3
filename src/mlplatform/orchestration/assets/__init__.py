"""The thin Dagster layer: one module per stage, each a factory of that stage's assets for one dataset."""
