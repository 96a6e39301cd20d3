"""Small helpers for writing DuckDB SQL text."""


def sql_string(value: object) -> str:
    """A SQL string literal, for statements such as COPY that take no bound parameters."""
    return "'" + str(value).replace("'", "''") + "'"
