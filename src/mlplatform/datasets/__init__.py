"""Datasets as declarations: each folder under ``mlplatform/defs`` with a ``defs.yaml`` is one dataset."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from mlplatform.datasets.dataset import DEFS_FILE, Dataset, DeclarationError, load_dataset

DEFS_DIR = Path(__file__).resolve().parents[1] / "defs"

__all__ = ["DEFS_DIR", "Dataset", "DeclarationError", "all_datasets", "get_dataset", "load_dataset"]


@cache
def all_datasets(defs_dir: Path = DEFS_DIR) -> dict[str, Dataset]:
    """Every dataset declared under ``defs_dir``, by name."""
    datasets = [load_dataset(path.parent) for path in sorted(Path(defs_dir).glob(f"*/{DEFS_FILE}"))]
    return {dataset.name: dataset for dataset in datasets}


def get_dataset(name: str, defs_dir: Path = DEFS_DIR) -> Dataset:
    datasets = all_datasets(defs_dir)
    if name not in datasets:
        raise KeyError(f"no dataset named {name!r}; declared: {', '.join(sorted(datasets)) or 'none'}")
    return datasets[name]
