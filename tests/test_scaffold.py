"""scaffold_dataset: a declaration inferred from a sample file loads, and says what the sample shows."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import duckdb
import pytest
import yaml

from mlplatform.datasets import scaffold
from mlplatform.datasets.dataset import feature_columns_of, load_dataset
from mlplatform.datasets.scaffold import scaffold_dataset

REGIONS, CHANNELS = ["east", "north", "south", "west"], ["phone", "store", "web"]


@pytest.fixture
def churn_csv(tmp_path: Path) -> Path:
    """200 customers over 2020 and 2021; amount rises with churned, visits is sometimes missing."""
    rng = random.Random(7)
    path = tmp_path / "churn.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "year", "region", "channel", "amount", "visits", "note", "churned"])
        for i in range(1, 201):
            churned = int(rng.random() < 0.3)
            amount = round(50 + 40 * churned + rng.gauss(0, 10), 2)
            visits = "NA" if i % 10 == 0 else rng.randint(0, 30)  # 10% missing, written as the platform does
            writer.writerow(
                [
                    i,
                    2020 if i <= 100 else 2021,
                    REGIONS[i % 4],
                    CHANNELS[i % 3],
                    amount,
                    visits,
                    f"note {i % 50}",
                    churned,
                ]
            )
    return path


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_csv_sample_gives_a_loadable_declaration(tmp_path: Path, churn_csv: Path) -> None:
    folder = scaffold_dataset(tmp_path / "defs", "churn", churn_csv, "year", label="churned")

    assert folder == tmp_path / "defs" / "churn"
    assert sorted(p.name for p in folder.iterdir()) == ["contract.yaml", "defs.yaml", "features.sql"]
    dataset = load_dataset(folder)
    assert dataset.name == "churn" and dataset.sources == ["churn"]
    assert (dataset.periods.grain, dataset.periods.start) == ("yearly", "2020")

    attributes = dataset.declaration
    assert attributes.landing.format == "csv" and attributes.landing.sources["churn"].time_column == "year"
    assert attributes.seed is None
    assert attributes.features.key == ["id"] and attributes.features.lookback_periods == 0
    assert attributes.predictor.name == "churn" and attributes.predictor.label == "is_churned"
    # id names rows, year places them in time and churned is the label: none of them is a feature.
    assert attributes.predictor.categorical == ["region", "channel"]
    assert attributes.predictor.numeric == ["amount", "visits"]
    assert attributes.training.target_period == "2021" and attributes.training.window_periods == 1
    assert attributes.training.time_order == ["year", "id"]
    assert attributes.evaluation.baseline == ["amount"] and attributes.evaluation.group_by == []
    assert attributes.description.startswith("TODO")


def test_csv_contract_states_types_ranges_and_values(tmp_path: Path, churn_csv: Path) -> None:
    folder = scaffold_dataset(tmp_path, "churn", churn_csv, "year", label="churned")

    text = (folder / "contract.yaml").read_text()
    assert text.startswith("# Inferred") and "churn.csv" in text.splitlines()[0]
    table = read_yaml(folder / "contract.yaml")["tables"]["churn"]
    columns = table["columns"]
    assert table["natural_key"] == ["id"]
    assert {name: spec["type"] for name, spec in columns.items()} == {
        "id": "BIGINT",
        "year": "BIGINT",
        "region": "VARCHAR",
        "channel": "VARCHAR",
        "amount": "DOUBLE",
        "visits": "BIGINT",
        "note": "VARCHAR",
        "churned": "BIGINT",
    }
    with duckdb.connect() as con:
        low, high = con.execute(f"SELECT min(amount), max(amount) FROM '{churn_csv}'").fetchone()
    assert columns["amount"]["checks"] == {"in_range": [low, high]}
    assert columns["churned"]["checks"] == {"in_range": [0, 1]}
    assert columns["region"]["checks"] == {"isin": REGIONS}
    assert columns["channel"]["checks"] == {"isin": CHANNELS}
    assert "checks" not in columns["note"]  # 50 distinct values: free text, no isin
    # No range on the identifier or the time column: later periods bring larger ids and later years.
    assert "checks" not in columns["id"] and "checks" not in columns["year"]
    assert columns["visits"]["null_reason"].startswith("TODO") and "visits" in columns["visits"]["null_reason"]
    assert 0.10 < columns["visits"]["max_null_share"] <= 0.15
    assert all("null_reason" not in spec for name, spec in columns.items() if name != "visits")


def test_feature_sql_makes_a_boolean_label_from_the_0_1_column(tmp_path: Path, churn_csv: Path) -> None:
    dataset = load_dataset(scaffold_dataset(tmp_path, "churn", churn_csv, "year", label="churned"))

    output = feature_columns_of(dataset)
    assert output["is_churned"] == "BOOLEAN"
    assert "period" not in output and "churned" not in output
    assert set(output) == {"id", "year", "region", "channel", "amount", "visits", "is_churned"}
    sql = dataset.features_sql
    assert "current_churn" in sql and "history_churn" in sql and "$period_start" in sql
    # Run over the sample itself: the label is churned = 1, row by row.
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW current_churn AS SELECT * FROM read_csv('{churn_csv}', nullstr = 'NA')")
        mismatches = con.execute(
            f"SELECT count(*) FROM ({sql}) AS f JOIN current_churn AS c USING (id) "
            "WHERE f.is_churned IS DISTINCT FROM (c.churned = 1)"
        ).fetchone()[0]
        rows = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
    assert (mismatches, rows) == (0, 200)


def transactions_parquet(path: Path, days_apart: int) -> Path:
    """120 transactions, three per timestamp, one every ``days_apart`` days from 2024-01-05; fraud is boolean."""
    with duckdb.connect() as con:
        con.execute(f"""
        COPY (
            SELECT TIMESTAMP '2024-01-05 10:30:00' + INTERVAL (i // 3 * {days_apart}) DAY AS ts,
                   printf('t%04d', i) AS txn,
                   (i % 5)::INTEGER AS items,
                   CAST(10 + i % 7 + CASE WHEN i % 4 = 0 THEN 50 ELSE 0 END AS DECIMAL(9, 2)) AS price,
                   ['card', 'cash'][i % 2 + 1] AS method,
                   i % 4 = 0 AS is_fraud
            FROM range(120) AS t(i)
        ) TO '{path}' (FORMAT parquet)
    """)
    return path


@pytest.mark.parametrize(
    ("days_apart", "grain", "expected"),
    [
        (1, None, ("daily", "2024-01-05", "2024-01-06")),  # 40 days
        (7, None, ("monthly", "2024-01", "2024-02")),  # 273 days
        (1, "monthly", ("monthly", "2024-01", "2024-02")),  # a grain given wins
    ],
)
def test_parquet_sample_with_a_timestamp(tmp_path: Path, days_apart: int, grain: str | None, expected) -> None:
    sample = transactions_parquet(tmp_path / "tx.parquet", days_apart)
    folder = scaffold_dataset(tmp_path / "defs", "payments", sample, "ts", label="is_fraud", grain=grain)

    dataset = load_dataset(folder)
    periods = dataset.declaration.periods
    assert (periods.grain, periods.start, dataset.declaration.training.target_period) == expected
    assert dataset.declaration.landing.format == "parquet"
    table = read_yaml(folder / "contract.yaml")["tables"]["payments"]
    # ts repeats, so the first column naming rows is txn; INTEGER and DECIMAL map to BIGINT and DOUBLE.
    assert table["natural_key"] == ["txn"]
    assert {name: spec["type"] for name, spec in table["columns"].items()} == {
        "ts": "TIMESTAMP",
        "txn": "VARCHAR",
        "items": "BIGINT",
        "price": "DOUBLE",
        "method": "VARCHAR",
        "is_fraud": "BOOLEAN",
    }
    assert table["columns"]["price"]["checks"] == {"in_range": [10.0, 66.0]}
    model = dataset.declaration.predictor
    assert model.label == "is_fraud_flag"  # is_is_fraud would read badly
    assert (model.categorical, model.numeric) == (["method"], ["items", "price"])
    assert dataset.declaration.evaluation.baseline == ["price"]
    assert dataset.declaration.training.time_order == ["ts", "txn"]
    assert feature_columns_of(dataset)["is_fraud_flag"] == "BOOLEAN"


@pytest.mark.parametrize(
    ("name", "time_column", "label", "message"),
    [
        ("Churn", "year", "churned", "must match"),
        ("1churn", "year", "churned", "must match"),
        ("churn-data", "year", "churned", "must match"),
        ("churn", "when", "churned", "time column 'when' is not a column"),
        ("churn", "year", "left", "label 'left' is not a column"),
        ("churn", "year", None, "--label"),
        ("churn", "year", "region", "not 0/1"),
        ("churn", "region", "churned", "must be a DATE, a TIMESTAMP or an integer year"),
    ],
)
def test_refuses_bad_arguments(tmp_path: Path, churn_csv: Path, name, time_column, label, message) -> None:
    defs = tmp_path / "defs"
    with pytest.raises(ValueError, match=message):
        scaffold_dataset(defs, name, churn_csv, time_column, label=label)
    assert not defs.exists() or not any(defs.iterdir())  # nothing half-written


def test_refuses_an_existing_folder(tmp_path: Path, churn_csv: Path) -> None:
    (tmp_path / "churn").mkdir()
    (tmp_path / "churn" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        scaffold_dataset(tmp_path, "churn", churn_csv, "year", label="churned")
    assert (tmp_path / "churn" / "keep.txt").read_text() == "mine"


def test_refuses_missing_or_unknown_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        scaffold_dataset(tmp_path, "churn", tmp_path / "absent.csv", "year", label="churned")
    other = tmp_path / "sample.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        scaffold_dataset(tmp_path, "churn", other, "year", label="churned")


def test_refuses_a_year_column_cut_finer_than_years(tmp_path: Path, churn_csv: Path) -> None:
    with pytest.raises(ValueError, match="years"):
        scaffold_dataset(tmp_path, "churn", churn_csv, "year", label="churned", grain="monthly")
    with pytest.raises(ValueError, match="grain must be one of"):
        scaffold_dataset(tmp_path, "churn", churn_csv, "year", label="churned", grain="weekly")


def test_needs_a_numeric_feature_for_the_baseline(tmp_path: Path) -> None:
    sample = tmp_path / "s.csv"
    sample.write_text(
        "id,year,color,bad\n" + "".join(f"{i},2020,{'red' if i % 2 else 'blue'},{i % 2}\n" for i in range(20))
    )
    with pytest.raises(ValueError, match=r"evaluation\.baseline"):
        scaffold_dataset(tmp_path / "defs", "colors", sample, "year", label="bad")
    assert not (tmp_path / "defs" / "colors").exists()


def test_a_scaffold_that_does_not_load_is_removed(tmp_path: Path, churn_csv: Path, monkeypatch) -> None:
    def broken(folder: Path):
        raise ValueError("does not load")

    monkeypatch.setattr(scaffold, "load_dataset", broken)
    with pytest.raises(ValueError, match="does not load"):
        scaffold_dataset(tmp_path, "churn", churn_csv, "year", label="churned")
    assert not (tmp_path / "churn").exists()


def test_keyword_columns_are_quoted_and_the_delimiter_sniffed(tmp_path: Path) -> None:
    sample = tmp_path / "events.csv"
    sample.write_text(
        "at;order;ok\n"
        + "".join(
            f"2021-03-{1 + i % 20:02d}T10:00:00+02:00;{i % 5};{'true' if i % 5 > 2 else 'false'}\n" for i in range(40)
        )
    )
    dataset = load_dataset(scaffold_dataset(tmp_path, "events", sample, "at", label="ok"))

    assert dataset.declaration.landing.delimiter == ";"
    assert (dataset.periods.grain, dataset.periods.start) == ("daily", "2021-03-01")
    assert dataset.contracts["events"].sql_types == {"at": "TIMESTAMP", "order": "BIGINT", "ok": "BOOLEAN"}
    assert '"at"' in dataset.features_sql and '"order"' in dataset.features_sql
    assert feature_columns_of(dataset)["is_ok"] == "BOOLEAN"
