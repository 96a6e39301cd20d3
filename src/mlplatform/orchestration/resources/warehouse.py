"""The DuckDB warehouse as a resource: an embedded file locally, a DuckLake (many writers at once) in production."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster._utils.backoff import backoff
from dagster_duckdb import DuckDBResource
from pydantic import Field

from mlplatform.data.lake import LakeSettings, connect_lake


class Warehouse(DuckDBResource):
    """dagster-duckdb's resource, creating the database file's folder on first use (not on import); or, given
    ``lake_catalog``, a connection to a DuckLake with the lake as its default catalog (``database`` unused)."""

    database: str = Field(default=":memory:", description="The DuckDB file; unused when lake_catalog is set.")
    lake_catalog: str = Field(
        default="",
        description="DuckLake's catalog: a PostgreSQL libpq connection string. Empty: the embedded file `database`.",
    )
    lake_data_path: str = Field(default="", description="DuckLake's data files: s3://bucket/prefix/ or a folder.")
    s3_endpoint: str = Field(
        default="", description="host:port of an S3-compatible store (plain HTTP); https://host:port; empty for AWS."
    )
    extension_directory: str = Field(
        default="",
        description="Where DuckDB's extensions are installed; empty: $MLPLATFORM_DATA_DIR/duckdb_extensions.",
    )

    @property
    def lake(self) -> LakeSettings | None:
        if not self.lake_catalog:
            return None
        return LakeSettings(
            catalog=self.lake_catalog,
            data_path=self.lake_data_path,
            s3_endpoint=self.s3_endpoint,
            extension_directory=self.extension_directory,
        )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        lake = self.lake
        if lake is None:
            if self.database != ":memory:" and "://" not in self.database and not self.database.startswith("md:"):
                Path(self.database).parent.mkdir(parents=True, exist_ok=True)
            with super().get_connection() as connection:
                yield connection
            return
        config = {"custom_user_agent": "dagster", **self.connection_config}
        # A catalog that is briefly unreachable (PostgreSQL restarting) is worth a few tries.
        connection = backoff(fn=connect_lake, retry_on=(duckdb.IOException,), args=[lake, config], max_retries=3)
        try:
            yield connection
        finally:
            connection.close()
