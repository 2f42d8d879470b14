"""What a schema records for predict, and the errors when new data differs from it.

Decode level (a spec and one CSV) and manifest level (what training infers and records,
and reading a manifest with a trained schema).  ``tests/cli/test_predict_schema.py`` runs
the same cases end to end through ``polymodal predict``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polymodal.data.decode import DecodeError, decode_file, series_rate
from polymodal.data.manifest import ManifestDataset, check_manifest, infer_schema
from polymodal.data.manifest.problems import ManifestError
from polymodal.data.modality import ModalitySpec, Schema

SPEC = ModalitySpec(
    "acc",
    "timeseries",
    shape=(2,),
    sample_rate=100.0,
    channels=("x", "y"),
    time_unit="ms",
    length=10,
)


def _series(path: Path, header: str = "x,y,timestamp", rows: int = 10, step: float = 10) -> Path:
    """``rows`` rows: x = row index, y = 10 * row index, timestamps ``step`` apart."""
    cols = header.split(",")
    lines = [header]
    for t in range(rows):
        cell = {"x": str(t), "y": str(10 * t), "timestamp": f"{t * step:g}"}
        lines.append(",".join(cell.get(c, str(-t)) for c in cols))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_channels_are_read_by_name(tmp_path: Path) -> None:
    a = decode_file(_series(tmp_path / "a.csv"), "timeseries", SPEC)
    b = decode_file(_series(tmp_path / "b.csv", "timestamp,y,extra,x"), "timeseries", SPEC)
    assert torch.equal(a.values, b.values)  # type: ignore[union-attr]
    assert b.columns == ["x", "y"]  # type: ignore[union-attr]


def test_a_missing_channel_names_expected_found_and_the_closest(tmp_path: Path) -> None:
    path = _series(tmp_path / "a.csv", "x,y_acc,timestamp")
    with pytest.raises(
        DecodeError,
        match=r"a\.csv' \(row 2\): it lacks channel\(s\) 'y' of modality 'acc'\. Expected "
        r"channels \(field 'channels', read by name, as trained\): x, y; found columns: x, "
        r"y_acc, timestamp; not read: y_acc \('y': did you mean 'y_acc'\?\)\. Fix: name",
    ):
        decode_file(path, "timeseries", SPEC, where="row 2")


def test_a_window_under_half_the_trained_length_is_refused(tmp_path: Path) -> None:
    assert decode_file(_series(tmp_path / "ok.csv", rows=5), "timeseries", SPEC) is not None
    with pytest.raises(DecodeError, match=r"it has 4 rows but modality 'acc' was trained on "):
        decode_file(_series(tmp_path / "a.csv", rows=4), "timeseries", SPEC)
    with pytest.raises(DecodeError, match=r"it has 1 row .* shorter than 5 rows is refused"):
        decode_file(_series(tmp_path / "b.csv", rows=1), "timeseries", SPEC)


@pytest.mark.parametrize(
    ("step", "unit", "fix"),
    [
        (0.01, "seconds", "multiply by 1000"),
        (10_000, "microseconds", "divide by 1000"),
    ],
)
def test_timestamps_in_another_unit_are_named(
    tmp_path: Path, step: float, unit: str, fix: str
) -> None:
    path = _series(tmp_path / "a.csv", step=step)
    with pytest.raises(
        DecodeError,
        match=rf"read in milliseconds \(field 'time_unit'\), imply [\d,.]+ Hz \(10 rows over "
        rf".*trained at 100 Hz \(field 'sample_rate'\), more than 20% off\. The timestamps "
        rf"look like {unit}, not milliseconds: read as {unit} they give 100 Hz\. Fix: write the 'timestamp' column in milliseconds \({fix}\)",
    ):
        decode_file(path, "timeseries", SPEC)


def test_a_spec_in_seconds_reads_seconds(tmp_path: Path) -> None:
    spec = ModalitySpec("acc", "timeseries", sample_rate=100.0, time_unit="s")
    ts = decode_file(_series(tmp_path / "a.csv", step=0.01), "timeseries", spec)
    assert series_rate(ts) == pytest.approx(100.0)  # type: ignore[arg-type]


def test_rate_within_tolerance_passes_and_no_timestamps_take_the_rate(tmp_path: Path) -> None:
    decode_file(_series(tmp_path / "a.csv", step=11), "timeseries", SPEC)  # 91 Hz
    with pytest.raises(DecodeError, match=r"imply 50 Hz .* Fix: resample the recording to 100"):
        decode_file(_series(tmp_path / "b.csv", step=20), "timeseries", SPEC)
    ts = decode_file(_series(tmp_path / "c.csv", "y,x"), "timeseries", SPEC)
    assert ts.timestamps[1].item() == pytest.approx(0.01)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- manifests


def _manifest(tmp_path: Path, lengths: list[int], header: str = "x,y,timestamp") -> Path:
    lines = ["id,acc,label"]
    for i, n in enumerate(lengths):
        _series(tmp_path / f"s{i}.csv", header, rows=n)
        lines.append(f"r{i},s{i}.csv,{'ab'[i % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


def test_inference_records_channels_rate_unit_length_and_column(tmp_path: Path) -> None:
    spec = infer_schema(_manifest(tmp_path, [10, 10, 10, 4]))["acc"]
    assert spec.channels == ("x", "y") and spec.shape == (2,)
    assert spec.sample_rate == pytest.approx(100.0) and spec.time_unit == "ms"
    assert spec.length == 10  # the first files all have 10 rows: fixed-length windows
    assert spec.columns == ("acc",)
    # a window under half of it is a problem in training data too
    problems = check_manifest(tmp_path / "m.csv")
    assert [(p.row, p.file) for p in problems] == [(5, "s3.csv")]
    assert "it has 4 rows but modality 'acc' was trained on windows of 10 rows" in (
        problems[0].message
    )


def test_windows_of_varying_length_record_no_length(tmp_path: Path) -> None:
    spec = infer_schema(_manifest(tmp_path, [10, 12, 30, 4]))["acc"]
    assert spec.length is None
    assert check_manifest(tmp_path / "m.csv") == []


def test_a_trained_schema_reads_tabular_columns_by_name(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("age,height,label\n30,1.8,a\n40,1.6,b\n")
    schema = ManifestDataset(tmp_path / "train.csv").schema
    assert schema["tabular"].columns == ("age", "height")
    trained = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))  # as schema.json
    (tmp_path / "new.csv").write_text("height,age\n1.8,30\n")
    ds = ManifestDataset(tmp_path / "new.csv", schema=trained, labels=False)
    assert ds[0].modalities["tabular"].tolist() == pytest.approx([30, 1.8])  # type: ignore[union-attr]
    (tmp_path / "bad.csv").write_text("height,agee\n1.8,30\n")
    with pytest.raises(
        ManifestError,
        match=r"The schema's modality 'tabular' names column 'age', which the manifest does "
        r"not have\. Available columns: height, agee\. Did you mean 'agee'\?",
    ):
        ManifestDataset(tmp_path / "bad.csv", schema=trained, labels=False)


def test_a_trained_schema_is_not_refilled_from_new_data(tmp_path: Path) -> None:
    old = ModalitySpec("acc", "timeseries", shape=(2,))  # a schema.json from before channels
    ds = ManifestDataset(_manifest(tmp_path, [10, 10]), schema=Schema((old,)), labels=False)
    assert ds.schema["acc"].channels is None and ds.schema["acc"].length is None


def test_a_schema_file_states_the_time_unit_and_columns_once(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [10, 10])
    for i in range(2):  # the same windows, timestamps in seconds
        _series(tmp_path / f"s{i}.csv", step=0.01)
    (tmp_path / "s.yaml").write_text("modalities: [{name: acc, kind: timeseries, time_unit: s}]\n")
    spec = ManifestDataset(manifest, schema=tmp_path / "s.yaml").schema["acc"]
    assert (spec.time_unit, spec.sample_rate, spec.channels) == ("s", 100.0, ("x", "y"))
    (tmp_path / "twice.yaml").write_text(
        "modalities: [{name: acc, kind: timeseries, columns: [acc]}]\ncolumns: {acc: acc}\n"
    )
    with pytest.raises(
        ManifestError,
        match=r"modality 'acc' states its columns \['acc'\] and 'columns' maps it to \['acc'\]",
    ):
        ManifestDataset(manifest, schema=tmp_path / "twice.yaml")
