"""The schema travels with the model: ``predict`` (and ``datasets check --for-model``) read
new data as training did, or say what differs.

A tiny time-series model is trained once on CSV windows written here; then the same windows
are given with their channels swapped, renamed, cut to one row, or with timestamps in seconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from polymodal.cli.main import main
from polymodal.data.manifest import ManifestDataset
from polymodal.data.modality import ModalitySpec, Schema

CHANNELS = ("ax", "ay", "az")
ROWS = 40  # per window
STEP_MS = 20  # 50 Hz
LABELS = ("still", "shake")


def _window(rng: np.random.Generator, label: int) -> np.ndarray:
    """(ROWS, 3): 'shake' windows have a strong oscillation on ax."""
    x = rng.normal(0.0, 0.2, size=(ROWS, 3))
    if label:
        x[:, 0] += 2.0 * np.sin(np.arange(ROWS) * 0.8)
    x[:, 2] += 9.8
    return x


def _write_csv(
    path: Path,
    values: np.ndarray,
    names: tuple[str, ...] = CHANNELS,
    order: tuple[int, ...] = (0, 1, 2),
    step: float = STEP_MS,
    rows: int = ROWS,
) -> None:
    """Columns ``names[order]`` then ``timestamp`` (``step`` apart, from 1000)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*(names[j] for j in order), "timestamp"])
        for t in range(rows):
            w.writerow([*(f"{values[t, j]:.6f}" for j in order), f"{1000 + t * step:g}"])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ts_cnn trained for one epoch on 24 windows (16 train, 8 test)."""
    d = tmp_path_factory.mktemp("ts")
    rng = np.random.default_rng(0)
    lines = ["id,acc,label,split"]
    windows = {}
    for i in range(24):
        label = i % 2
        windows[i] = _window(rng, label)
        _write_csv(d / f"w{i}.csv", windows[i])
        lines.append(f"w{i},w{i}.csv,{LABELS[label]},{'test' if i >= 16 else 'train'}")
    (d / "train.csv").write_text("\n".join(lines) + "\n")
    np.save(d / "windows.npy", np.stack([windows[i] for i in range(24)]))
    cfg = {
        "data": {"manifest": str(d / "train.csv"), "batch_size": 8},
        "model": {
            "encoders": {"acc": {"name": "ts_cnn", "params": {"dim": 8, "channels": 8}}},
            "fusion": {"name": "early", "params": {"hidden_dim": 8}},
        },
        "optim": {"epochs": 1},
        "device": "cpu",
        "patience": None,
        "progress": False,
        "output_dir": str(d / "run"),
    }
    (d / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(d / "cfg.yaml")]) == 0
    return d / "run"


def _new_data(folder: Path, run: Path, **kw: object) -> Path:
    """A manifest of the 8 test windows, written with ``_write_csv(**kw)``."""
    folder.mkdir()
    windows = np.load(run.parent / "windows.npy")
    lines = ["id,acc"]
    for i in range(16, 24):
        _write_csv(folder / f"w{i}.csv", windows[i], **kw)  # type: ignore[arg-type]
        lines.append(f"w{i},w{i}.csv")
    (folder / "new.csv").write_text("\n".join(lines) + "\n")
    return folder / "new.csv"


def _predict(run: Path, manifest: Path) -> tuple[int, list[dict[str, str]]]:
    out = manifest.parent / "pred.csv"
    code = main(["predict", str(run), str(manifest), "-o", str(out)])
    return code, list(csv.DictReader(out.open())) if code == 0 else []


def test_training_records_what_predict_must_match(run: Path) -> None:
    spec = json.loads((run / "schema.json").read_text())["modalities"][0]
    assert spec["channels"] == list(CHANNELS)
    assert spec["time_unit"] == "ms"
    assert spec["sample_rate"] == pytest.approx(1000 / STEP_MS)
    assert spec["length"] == ROWS
    assert spec["columns"] == ["acc"]
    assert spec["shape"] == [3]


def test_swapped_channels_are_read_by_name(run: Path, tmp_path: Path) -> None:
    code, same = _predict(run, _new_data(tmp_path / "same", run))
    assert code == 0
    code, swapped = _predict(run, _new_data(tmp_path / "swapped", run, order=(2, 0, 1)))
    assert code == 0
    assert swapped == same  # ids, predictions and every probability


def test_renamed_channel_is_an_error_naming_expected_and_found(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _new_data(tmp_path / "renamed", run, names=("ax", "acc_y", "az"))
    assert _predict(run, manifest)[0] == 2
    err = capsys.readouterr().err
    assert "w16.csv' (new.csv: row 2, column 'acc'): it lacks channel(s) 'ay'" in err
    assert "Expected channels (field 'channels', read by name, as trained): ax, ay, az" in err
    assert (
        "found columns: ax, acc_y, az, timestamp; not read: acc_y ('ay': did you mean "
        "'acc_y'?). Fix: name the file's columns as the expected channels (any order)" in err
    )
    assert not (manifest.parent / "pred.csv").exists()


def test_one_row_window_is_an_error(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _new_data(tmp_path / "short", run, rows=1)
    assert _predict(run, manifest)[0] == 2
    err = capsys.readouterr().err
    assert (
        "it has 1 row but modality 'acc' was trained on windows of 40 rows (field 'length'; "
        "0.8 s at 50 Hz); a series shorter than 20 rows is refused. Fix: give windows of 40 "
        "rows" in err
    )


def test_timestamps_in_seconds_are_an_error_naming_the_unit(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _new_data(tmp_path / "seconds", run, step=STEP_MS / 1000)
    assert _predict(run, manifest)[0] == 2
    err = capsys.readouterr().err
    assert (
        "its timestamps, read in milliseconds (field 'time_unit'), imply 50,000 Hz (40 rows "
        "over 0.00078 s)" in err
    )
    assert "but modality 'acc' was trained at 50 Hz (field 'sample_rate')" in err
    assert "off. The timestamps look like seconds, not milliseconds: read as seconds they " in err
    assert "give 50 Hz. Fix: write the 'timestamp' column in milliseconds (multiply by 1000)" in err


def test_a_rate_far_off_is_an_error_and_ten_percent_is_not(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _predict(run, _new_data(tmp_path / "near", run, step=STEP_MS * 1.1))[0] == 0
    assert _predict(run, _new_data(tmp_path / "slow", run, step=STEP_MS * 2))[0] == 2
    err = capsys.readouterr().err
    assert (
        "imply 25 Hz (40 rows over 1.56 s), but modality 'acc' was trained at 50 Hz (field 'sample_rate'), more than 20% off. Fix: resample the recording to 50 Hz, or use a model trained at 25 Hz"
        in err
    )


def test_check_for_model_reports_the_same_mismatches(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _new_data(tmp_path / "renamed", run, names=("ax", "acc_y", "az"))
    assert main(["datasets", "check", str(manifest), "--for-model", str(run)]) == 1
    out = capsys.readouterr().out
    assert (
        "  modality 'acc': timeseries channels ax, ay, az, 50 Hz, timestamps in ms, windows "
        "of 40 rows <- column 'acc' (stated: the model's schema)" in out
    )
    assert "row 2, column 'acc', file 'w16.csv': Cannot decode time series" in out
    assert "it lacks channel(s) 'ay'" in out
    assert "8 problem(s) in 8 of 8 rows" in out
    manifest = _new_data(tmp_path / "seconds", run, step=STEP_MS / 1000)
    assert main(["datasets", "check", str(manifest), "--for-model", str(run)]) == 1
    assert "The timestamps look like seconds, not milliseconds" in capsys.readouterr().out


def test_renamed_manifest_column_names_the_trained_one(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _new_data(tmp_path / "col", run)
    manifest.write_text(manifest.read_text().replace("id,acc", "id,accel", 1))
    assert _predict(run, manifest)[0] == 2
    err = capsys.readouterr().err
    assert "lacks column(s) ['acc']. The model was trained on columns ['acc']" in err
    assert "For 'acc': Did you mean 'accel'?" in err


def test_old_schema_without_the_new_fields_still_loads(run: Path, tmp_path: Path) -> None:
    spec = json.loads((run / "schema.json").read_text())["modalities"][0]
    old = {k: v for k, v in spec.items() if k not in ("channels", "time_unit", "length", "columns")}
    schema = Schema.from_dict({"modalities": [old], "target": {"class_names": list(LABELS)}})
    assert schema["acc"].channels is None and schema["acc"].columns is None
    # read by position, as before: the columns in file order
    manifest = _new_data(tmp_path / "old", run, order=(2, 0, 1))
    ds = ManifestDataset(manifest, schema=schema, labels=False)
    first = ds[0].modalities["acc"]
    windows = np.load(run.parent / "windows.npy")
    assert np.allclose(first.numpy(), windows[16][:, [2, 0, 1]], atol=1e-5)  # type: ignore[union-attr]


def test_spec_fields_are_checked() -> None:
    with pytest.raises(ValueError, match=r"sets channels, length, which only a 'timeseries'"):
        ModalitySpec("img", "image", channels=("r",), length=3)
    with pytest.raises(ValueError, match=r"Unknown time_unit 'sec'.*Did you mean 's'"):
        ModalitySpec("acc", "timeseries", time_unit="sec")
    with pytest.raises(ValueError, match=r"has 2 channels \['a', 'b'\] but shape \(3,\)"):
        ModalitySpec("acc", "timeseries", shape=(3,), channels=("a", "b"))
    with pytest.raises(ValueError, match=r"'channels' must list unique non-empty names"):
        ModalitySpec("acc", "timeseries", channels=("a", "a"))
