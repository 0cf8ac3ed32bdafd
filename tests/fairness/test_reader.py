"""Auditing CSV and Parquet files: equal results, chunking, digests and clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from governance.fairness import reader
from governance.fairness.engine import FairnessInputError
from governance.fairness.reader import audit_file

HEADER = "label,prediction,sex,band,other\n"


def _frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, rows)
    frame = pd.DataFrame(
        {
            "label": label,
            "prediction": np.where(rng.random(rows) < 0.3, 1 - label, label),
            "sex": rng.choice(np.array(["female", "male", None], dtype=object), rows, p=[0.45, 0.45, 0.1]),
            "band": rng.integers(1, 4, rows),
            "score": np.round(rng.random(rows), 3),
            "other": rng.random(rows),
        }
    )
    return frame


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _audit(path: Path, **kwargs: object) -> dict:
    options: dict = {"y_true": "label", "y_pred": "prediction", "sensitive": ["sex", "band"]}
    options.update(kwargs)
    return audit_file(path, **options)


def _without_input(report: dict) -> dict:
    return {key: value for key, value in report.items() if not key.startswith("input_")}


def test_csv_and_parquet_give_the_same_report(tmp_path: Path) -> None:
    frame = _frame()
    csv_path = _write_csv(frame, tmp_path / "data.csv")
    parquet_path = tmp_path / "data.parquet"
    frame.to_parquet(parquet_path, index=False)

    from_csv = _audit(csv_path, bootstrap=300, seed=5)
    from_parquet = _audit(parquet_path, bootstrap=300, seed=5)

    assert from_csv["input_format"] == "csv"
    assert from_parquet["input_format"] == "parquet"
    assert _without_input(from_csv) == _without_input(from_parquet)
    assert any(group["attributes"] == {"sex": "Unknown"} for group in from_csv["groups"])
    assert {group["attributes"].get("band") for group in from_csv["groups"]} >= {"1", "2", "3"}


def test_parquet_with_float_labels_and_categorical_groups_matches_csv(tmp_path: Path) -> None:
    frame = _frame()
    csv_path = _write_csv(frame, tmp_path / "data.csv")
    typed = frame.assign(label=frame["label"].astype(float), sex=frame["sex"].astype("category"))
    parquet_path = tmp_path / "typed.parquet"
    typed.to_parquet(parquet_path, index=False)

    assert _without_input(_audit(csv_path)) == _without_input(_audit(parquet_path))


def test_tiny_chunks_give_the_same_report_as_one_chunk(tmp_path: Path) -> None:
    frame = _frame(rows=1_000)
    csv_path = _write_csv(frame, tmp_path / "data.csv")
    parquet_path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet_path, row_group_size=128)

    whole = _audit(csv_path, bootstrap=200, seed=1)
    assert _audit(csv_path, chunk_rows=7, bootstrap=200, seed=1) == whole
    assert _without_input(_audit(parquet_path, chunk_rows=13, bootstrap=200, seed=1)) == _without_input(whole)


def test_result_carries_sha256_of_the_file_bytes(tmp_path: Path) -> None:
    path = _write_csv(_frame(), tmp_path / "data.csv")
    report = _audit(path)
    assert report["input_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["input_columns"]["sensitive"] == ["sex", "band"]


def test_score_mode_reads_a_score_column(tmp_path: Path) -> None:
    frame = _frame()
    frame["prediction"] = (frame["score"] >= 0.5).astype(int)
    path = _write_csv(frame, tmp_path / "data.csv")

    by_score = _audit(path, y_pred=None, score="score", threshold=0.5)
    by_label = _audit(path)

    assert by_score["groups"] == by_label["groups"]
    assert by_score["input_columns"]["threshold"] == 0.5


def test_named_labels_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "named.csv"
    path.write_text("y,p,g\ngood,good,a\nbad,good,a\ngood,bad,b\nbad,bad,b\n")
    report = audit_file(path, y_true="y", y_pred="p", sensitive=["g"], pos_label="good", min_group_size=0)
    assert report["overall"]["tpr"] == 0.5
    assert report["groups"][0]["fpr"] == 1.0


def test_numeric_text_labels_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "floats.csv"
    path.write_text("y,p,g\n1.0,1,a\n0.0,1,a\n1, 0 ,b\n0,0.0,b\n")
    report = audit_file(path, y_true="y", y_pred="p", sensitive=["g"], pos_label=1, min_group_size=0)
    assert report["overall"]["tpr"] == 0.5
    assert report["pos_label"] == "1"


# --- errors ----------------------------------------------------------------------------------


def test_bad_label_names_the_data_row_across_chunks(tmp_path: Path) -> None:
    frame = _frame(rows=50)
    frame["label"] = frame["label"].astype(str)
    frame.loc[37, "label"] = "yes"
    path = _write_csv(frame, tmp_path / "data.csv")

    with pytest.raises(FairnessInputError) as error:
        _audit(path, chunk_rows=4)
    assert error.value.code == "fairness_bad_label"
    assert error.value.extra["row"] == 38
    assert "row 38" in str(error.value) and "yes" not in str(error.value)


def test_empty_label_cell_is_a_bad_label(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text(HEADER + "1,1,male,1,0\n,1,male,1,0\n")
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.extra["row"] == 2


def test_text_score_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "score.csv"
    path.write_text("label,score,sex,band\n1,0.9,m,1\n0,0.1,m,1\n0,n/a,m,1\n")
    with pytest.raises(FairnessInputError) as error:
        _audit(path, y_pred=None, score="score", threshold=0.5, chunk_rows=2)
    assert error.value.code == "fairness_bad_score"
    assert error.value.extra["row"] == 3


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_empty_input"
    assert "empty" in str(error.value)


def test_header_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text(HEADER)
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_empty_input"
    assert "no data rows" in str(error.value)


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    _frame().head(0).to_parquet(path, index=False)
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_empty_input"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_missing_column_is_named(tmp_path: Path, kind: str) -> None:
    frame = _frame().drop(columns=["band"])
    path = tmp_path / f"data.{kind}"
    if kind == "csv":
        _write_csv(frame, path)
    else:
        frame.to_parquet(path, index=False)
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_missing_column"
    assert error.value.extra["missing"] == ["band"]
    assert "'band'" in str(error.value)


def test_ragged_row_is_malformed_and_named(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(HEADER + "1,1,male,1,0.5\n0,1,female,2\n1,0,male,3,0.1\n")
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_malformed_file"
    assert "data row 2" in str(error.value)
    assert "4 fields, expected 5" in str(error.value)


def test_ragged_row_far_into_the_file_is_found(tmp_path: Path) -> None:
    frame = _frame(rows=200_000)
    path = _write_csv(frame, tmp_path / "big.csv")
    with open(path, "a") as handle:
        handle.write("1,0\n")
    with pytest.raises(FairnessInputError) as error:
        _audit(path, chunk_rows=10_000)
    assert error.value.code == "fairness_malformed_file"
    assert "data row 200001" in str(error.value)


def test_binary_junk_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "junk.csv"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4_096, dtype=np.uint8)))
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_malformed_file"


def test_invalid_utf8_in_a_used_column_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + b"1,1,male,1,0\n0,1,f\xe9male,2,0\n")
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_malformed_file"
    assert "UTF8" in str(error.value) or "UTF-8" in str(error.value)


def test_corrupt_parquet_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    good = tmp_path / "good.parquet"
    _frame().to_parquet(good, index=False)
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # starts with PAR1, footer gone
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_malformed_file"
    assert "Parquet" in str(error.value)


def test_csv_read_as_parquet_is_malformed(tmp_path: Path) -> None:
    path = _write_csv(_frame(), tmp_path / "data.csv")
    with pytest.raises(FairnessInputError) as error:
        _audit(path, file_format="parquet")
    assert error.value.code == "fairness_malformed_file"


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FairnessInputError) as missing:
        _audit(tmp_path / "nope.csv")
    assert missing.value.code == "fairness_file_not_found"
    path = _write_csv(_frame(), tmp_path / "data.csv")
    with pytest.raises(FairnessInputError) as both:
        _audit(path, score="score", threshold=0.5)
    assert both.value.code == "fairness_bad_arguments"
    with pytest.raises(FairnessInputError) as no_threshold:
        _audit(path, y_pred=None, score="score")
    assert no_threshold.value.code == "fairness_bad_arguments"


def test_file_changed_during_the_audit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_csv(_frame(), tmp_path / "data.csv")
    real_add = reader.ConfusionAccumulator.add

    def add_then_append_a_row(self: reader.ConfusionAccumulator, *args: object, **kwargs: object) -> None:
        real_add(self, *args, **kwargs)  # type: ignore[arg-type]
        with open(path, "a") as handle:
            handle.write("1,1,male,1,0.5,0.1\n")

    monkeypatch.setattr(reader.ConfusionAccumulator, "add", add_then_append_a_row)
    with pytest.raises(FairnessInputError) as error:
        _audit(path)
    assert error.value.code == "fairness_input_changed"
