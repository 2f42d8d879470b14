"""``polymodal datasets {list,info,check}`` through ``main([...])`` on the shared real data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from polymodal.cli.main import main
from polymodal.data.datasets import DATASETS

REPO = Path(__file__).resolve().parents[2]


def test_list_prints_one_line_per_dataset(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "modalities", "splits", "licence"]
    names = [line.split()[0] for line in out[1:]]
    assert names == DATASETS.names()
    mosi = next(line for line in out if line.startswith("mosi "))
    assert "transcript:text" in mosi and "train/test" in mosi and "research use" in mosi
    har = next(line for line in out if line.startswith("har_phone_watch "))
    assert "phone:timeseries" in har and "CC BY 4.0" in har


def test_info_mosi_counts_per_split_and_class(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datasets", "info", "mosi"]) == 0
    out = capsys.readouterr().out
    assert "licence:  CMU-MOSI: research use" in out
    assert "upstream: github.com/declare-lab" in out
    assert "features" in out and "(100,)" in out and "(73,)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["total"] == ["1447", "752", "2199"]
    assert rows["negative"] == ["738", "285", "1023"]
    assert rows["positive"] == ["709", "467", "1176"]
    assert rows["groups"] == ["62", "31"]  # videos: no video in both splits


def test_info_har_phone_watch_windows_per_class(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datasets", "info", "har_phone_watch", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "windows per split and class:" in out
    assert "timeseries" in out and "(T, 6)" in out and "50 Hz" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    for cls in ("WALKING", "TURNING", "SEATED", "SITTING_DOWN", "STANDING_UP"):
        train, test, total = (int(x) for x in rows[cls])
        assert train > 0 and test > 0 and total == train + test
    per_class_total = sum(
        int(rows[c][2]) for c in ("WALKING", "TURNING", "SEATED", "SITTING_DOWN", "STANDING_UP")
    )
    assert int(rows["total"][2]) == per_class_total
    assert rows["groups"] == ["18", "5"]  # subjects


def test_unknown_dataset_exits_2_with_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "info", "mosy"]) == 2
    err = capsys.readouterr().err
    assert "Unknown dataset 'mosy'" in err and "Did you mean 'mosi'?" in err


def test_datasets_without_verb_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets"]) == 2
    assert "list" in capsys.readouterr().out


def _manifest_dir(tmp_path: Path, data_root: Path) -> Path:
    for w in ("0_george_0.wav", "1_george_0.wav"):
        shutil.copy(data_root / "fsdd" / "recordings" / w, tmp_path / w)
    shutil.copy(data_root / "flickr8k" / "images" / "1000268201_693b08cb0e.jpg", tmp_path / "a.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg " * 20)
    (tmp_path / "short.wav").write_bytes((tmp_path / "0_george_0.wav").read_bytes()[:30])
    return tmp_path


def test_check_clean_manifest_exits_0(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _manifest_dir(tmp_path, data_root)
    (d / "ok.csv").write_text(
        "audio,image,caption,label\n0_george_0.wav,a.jpg,a girl,0\n1_george_0.wav,,,1\n"
    )
    assert main(["datasets", "check", str(d / "ok.csv")]) == 0
    assert capsys.readouterr().out.strip().endswith("OK, 2 rows, no problems.")


def test_check_damaged_manifest_lists_every_problem_and_exits_1(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _manifest_dir(tmp_path, data_root)
    (d / "bad.csv").write_text(
        "audio,image,caption,score,label\n"
        "0_george_0.wav,a.jpg,a girl,1.5,0\n"
        "gone.wav,,x,2.0,1\n"  # row 3
        "short.wav,,x,2.0,1\n"  # row 4
        ",bad.jpg,x,2.0,0\n"  # row 5
        ",,x,NaN,0\n"  # row 6
    )
    assert main(["datasets", "check", str(d / "bad.csv")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("bad.csv: 5 rows, read as:")
    assert (
        "  modality 'audio': audio 8000 Hz <- column 'audio' (inferred: cells are audio"
        in (lines[1])
    )
    out = [line for line in lines[1:] if not line.startswith("  ")]
    assert out[0].startswith("row 3, column 'audio', file 'gone.wav': File not found")
    assert out[1].startswith("row 4, column 'audio', file 'short.wav': Cannot decode audio")
    assert out[2].startswith("row 5, column 'image', file 'bad.jpg': Cannot decode image")
    assert out[3].startswith("row 6, column 'score': value 'NaN' is not a finite number")
    assert "4 problem(s) in 4 of 5 rows" in out[4]


def test_check_with_schema_reports_unknown_label_and_column(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _manifest_dir(tmp_path, data_root)
    (d / "m.csv").write_text("audio,label\n0_george_0.wav,cat\n1_george_0.wav,dgo\n")
    (d / "s.yaml").write_text(
        "modalities: [{name: audio, kind: audio}, {name: caption, kind: text}]\n"
        "target: {class_names: [cat, dog]}\n"
    )
    assert main(["datasets", "check", str(d / "m.csv"), "--schema", str(d / "s.yaml")]) == 1
    out = capsys.readouterr().out
    assert "manifest, column 'caption': The schema's modality 'caption' names column" in out
    assert "row 3, column 'label': label 'dgo' is not one of the schema's classes" in out
    assert "Did you mean 'dog'?" in out
    assert "1 about the whole manifest" in out


def test_check_missing_manifest_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "check", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter imports torch: several seconds
def test_python_dash_m_entry_point(data_root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "polymodal", "datasets", "info", "mosi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1447" in proc.stdout and "752" in proc.stdout


def test_check_reports_typos_ambiguous_tasks_and_empty_manifests_like_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "typo.csv").write_text("caption,age,label\nhi,1,0\nyo,abc,1\nho,3,0\n")
    assert main(["datasets", "check", str(tmp_path / "typo.csv")]) == 1
    out = capsys.readouterr().out
    assert "  column 'age': not read (its kind cannot be inferred; see the problems below)" in out
    assert "row 3, column 'age': value 'abc' is not a number" in out
    assert "kinds: {age: text}" in out
    (tmp_path / "task.csv").write_text("caption,label\na,0\nb,1\nc,0.5\n")
    assert main(["datasets", "check", str(tmp_path / "task.csv")]) == 1
    out = capsys.readouterr().out
    assert "manifest, column 'label': the task of label column 'label' cannot be inferred" in out
    (tmp_path / "task.yaml").write_text("target: {task: regression}\n")
    argv = [
        "datasets",
        "check",
        str(tmp_path / "task.csv"),
        "--schema",
        str(tmp_path / "task.yaml"),
    ]
    assert main(argv) == 0
    assert "  target: regression <- column 'label' (stated: the schema's target)" in (
        capsys.readouterr().out
    )
    (tmp_path / "empty.csv").write_text("caption,label\n")
    assert main(["datasets", "check", str(tmp_path / "empty.csv")]) == 1
    assert "manifest: 'empty.csv' has no rows of data" in capsys.readouterr().out


def test_check_unreadable_manifests_exit_2_naming_file_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "latin.csv").write_bytes("caption,label\ncaf\xe9,0\n".encode("latin-1"))
    assert main(["datasets", "check", str(tmp_path / "latin.csv")]) == 2
    err = capsys.readouterr().err
    assert "latin.csv' is not UTF-8: byte 0xe9 at byte offset 17 (line 2" in err
    assert "Save it as UTF-8" in err and "Traceback" not in err
    (tmp_path / "long.csv").write_text("caption,label\n" + "x" * 140_000 + ",0\n")
    assert main(["datasets", "check", str(tmp_path / "long.csv")]) == 2
    err = capsys.readouterr().err
    assert "long.csv': row 2 cannot be read as CSV (field larger than field limit" in err


def test_info_reads_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "mine.csv"
    rows = ["id,text,age,label,split"] + [
        f"r{i},word {i},{20 + i},{'yes' if i % 2 else 'no'},{'test' if i < 2 else 'train'}"
        for i in range(6)
    ]
    data.write_text("\n".join(rows) + "\n")
    assert main(["datasets", "info", str(data)]) == 0
    out = capsys.readouterr().out
    assert "a manifest of 6 rows" in out and "splits:   test, train" in out
    assert "target:   label: classification, 2 classes (no, yes)" in out
    assert "  total      2      4      6" in out
