"""Small helpers for writing DuckDB SQL text, and the names allowed to become SQL identifiers."""

# Dataset, source, table and column names from declarations become SQL identifiers and folder names: a strict
# pattern keeps every one of them a plain word (no quoting tricks, no path separators).
NAME = r"^[a-z][a-z0-9_]{0,62}$"
COLUMN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


def sql_string(value: object) -> str:
    """A SQL string literal, for statements such as COPY that take no bound parameters."""
    return "'" + str(value).replace("'", "''") + "'"


def identifier(name: str) -> str:
    """A quoted SQL identifier (names are checked against the declaration's patterns first; quoting is a
    second line of defence)."""
    return '"' + str(name).replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"``."""
    return f"{identifier(schema)}.{identifier(table)}"
