"""The DuckDB warehouse as a resource."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource


class Warehouse(DuckDBResource):
    """dagster-duckdb's resource, creating the database file's folder on first use (not on import)."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:" and "://" not in self.database and not self.database.startswith("md:"):
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as connection:
            yield connection
