"""Each benchmark owns one ``## `` section of docs/benchmarks.md and rewrites only that one."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
DOCS = REPOSITORY / "docs" / "benchmarks.md"


def revision() -> str:
    """The checkout's short git revision, which a section names as the code it measured ("" outside git)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True)
    return head.stdout.strip()


def replace_section(document: str, title: str, text: str) -> str:
    """``document`` with its ``## {title}`` section replaced by ``text`` (appended if absent)."""
    head, *sections = document.split("\n## ")
    sections = ["## " + part.rstrip() + "\n" for part in sections]
    ours = [i for i, part in enumerate(sections) if part.startswith(f"## {title}\n")]
    if ours:
        sections[ours[0]] = text
    else:
        sections.append(text)
    return head.rstrip() + "\n\n" + "\n".join(sections)


def write_section(title: str, text: str, docs: Path = DOCS) -> None:
    existing = docs.read_text() if docs.exists() else "# Benchmarks\n"
    docs.parent.mkdir(exist_ok=True)
    docs.write_text(replace_section(existing, title, text))
