"""The thin Dagster layer: one module per stage, each defining that stage's assets and checks."""
