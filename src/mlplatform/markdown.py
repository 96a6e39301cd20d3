"""Markdown for what the UI shows: small tables in metadata and model cards."""

import polars as pl


def markdown_table(frame: pl.DataFrame) -> str:
    """A small frame as a markdown table."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += [
        "| " + " | ".join("" if value is None else str(value) for value in row) + " |" for row in frame.iter_rows()
    ]
    return "\n".join(lines)
