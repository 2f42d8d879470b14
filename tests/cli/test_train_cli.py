"""End to end on real data: ``polymodal train / evaluate / predict`` on MOSI features."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from polymodal.cli.main import main
from polymodal.data.datasets import load_dataset
from tests.cli.killing import kill_after_first_checkpoint

pytestmark = pytest.mark.usefixtures("data_root")

TINY = {
    "data": {
        "dataset": "mosi",
        "options": {"modalities": ["text", "audio"]},
        "batch_size": 64,
    },
    "model": {
        "encoders": {
            "text": {"name": "mlp", "params": {"dim": 16, "num_layers": 1, "dropout": 0.1}},
            "audio": {"name": "mlp", "params": {"dim": 16, "num_layers": 1, "dropout": 0.1}},
        },
        "fusion": {"name": "early", "params": {"hidden_dim": 16, "dropout": 0.1}},
        "modality_dropout": {"audio": 0.2},
    },
    "optim": {"lr": 3.0e-3, "epochs": 3},
    "device": "cpu",
    "patience": None,
    "progress": False,
}


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short MOSI run shared by the evaluate/predict tests."""
    folder = tmp_path_factory.mktemp("run")
    cfg = folder / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = folder / "run"
    assert main(["train", str(cfg), f"output_dir={run}", "optim.epochs=2"]) == 0
    return run


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _history(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_train_prints_val_and_test_table(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = json.loads((trained_run / "results.json").read_text())
    assert results["epochs_run"] == 2
    assert set(results["test"]) == {"accuracy", "macro_f1", "weighted_f1", "auroc", "loss"}
    assert results["test"]["accuracy"] > 0.6  # text features alone reach ~0.75
    assert (trained_run / "metrics.csv").read_text().startswith("epoch,step,lr,train_loss,")


def test_evaluate_reproduces_the_run(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = json.loads((trained_run / "results.json").read_text())
    assert main(["evaluate", str(trained_run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "split 'test': 752 examples" in out
    assert f"{results['test']['accuracy']:.4f}" in out
    assert main(["evaluate", str(trained_run / "checkpoints" / "best"), "--split", "val"]) == 0
    assert f"{results['val']['accuracy']:.4f}" in capsys.readouterr().out


def test_evaluate_rejects_weights_of_another_model(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "other"
    shutil.copytree(trained_run / "checkpoints" / "best", ckpt)
    cfg = yaml.safe_load((ckpt / "config.yaml").read_text())
    cfg["model"]["encoders"]["text"]["params"]["dim"] = 8
    (ckpt / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "does not belong to this model" in err
    assert "shape mismatch: encoders.text" in err and "checkpoint (16," in err


def _mosi_manifest(path: Path, columns: tuple[str, ...], n: int = 12) -> list[str]:
    ds = load_dataset("mosi", split="test", modalities=("text", "audio", "video"))
    ids = []
    with path.open("w") as f:
        for i in range(n):
            s = ds[i]
            row = {"id": s.id, **{c: s.modalities[c].tolist() for c in columns}}  # type: ignore[union-attr]
            f.write(json.dumps(row) + "\n")
            ids.append(s.id)
    return ids


def test_predict_writes_ids_predictions_probabilities(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polymodal.inference import load_trained

    manifest = tmp_path / "new.jsonl"
    ids = _mosi_manifest(manifest, ("audio", "text"))
    out = tmp_path / "pred.csv"
    assert main(["predict", str(trained_run), str(manifest), "-o", str(out)]) == 0
    assert "wrote 12 predictions" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "prediction", "prob_negative", "prob_positive"]
    assert [r["id"] for r in rows] == ids
    for r in rows:
        p_neg, p_pos = float(r["prob_negative"]), float(r["prob_positive"])
        assert p_neg + p_pos == pytest.approx(1.0, abs=1e-5)
        assert r["prediction"] == ("positive" if p_pos > p_neg else "negative")
    # the same as the model on the built-in data set's rows
    model = load_trained(trained_run).model
    ds = load_dataset("mosi", split="test", modalities=("text", "audio"))
    expect = model.predict(ds.batch(range(12))).tolist()  # type: ignore[operator]
    assert [r["prediction"] for r in rows] == [("negative", "positive")[k] for k in expect]


def test_predict_manifest_columns_must_match(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "wrong.jsonl"
    _mosi_manifest(manifest, ("text", "video"), n=3)
    assert main(["predict", str(trained_run), str(manifest), "-o", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "lacks column(s) ['audio']" in err
    assert "The model was trained on columns ['text', 'audio']" in err
    assert "the manifest has: ['id', 'text', 'video']" in err
    assert not (tmp_path / "p.csv").exists()


def test_predict_ignores_labels_and_check_for_model_reads_as_predict_does(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "new.jsonl"
    _mosi_manifest(manifest, ("audio", "text"), n=4)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for r, label in zip(rows, ["positive", "neutral", None, "negative"], strict=True):
        r["label"] = label  # 'neutral': a class the model never saw; predict does not read it
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["datasets", "check", str(manifest), "--for-model", str(trained_run)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "  modality 'text': features (100,) <- column 'text' (stated: the model's schema)" in out
    assert "  target: not read (predict ignores labels; the model predicts classification" in out
    assert out.strip().endswith("OK, 4 rows, no problems.")
    # as train reads it, the labels matter: row 3 lacks one
    assert main(["datasets", "check", str(manifest)]) == 1
    assert "row 3, column 'label': label is empty while other rows are labelled" in (
        capsys.readouterr().out
    )
    out_csv = tmp_path / "p.csv"
    assert main(["predict", str(trained_run), str(manifest), "-o", str(out_csv)]) == 0
    assert len(list(csv.DictReader(out_csv.open()))) == 4
    # a manifest without the model's audio column: the check says so, as predict would
    _mosi_manifest(manifest, ("text",), n=2)
    assert main(["datasets", "check", str(manifest), "--for-model", str(trained_run)]) == 1
    assert "column 'audio': The schema's modality 'audio' names column 'audio'" in (
        capsys.readouterr().out
    )


def test_predict_output_must_be_a_writable_file(
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import polymodal.checkpoint
    import polymodal.cli.train as train_cli

    manifest = tmp_path / "new.jsonl"
    _mosi_manifest(manifest, ("audio", "text"), n=2)
    predict = ["predict", str(trained_run), str(manifest), "-o"]
    assert main([*predict, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"-o {str(tmp_path)!r} is a folder; give a file name, e.g. -o " in err
    (tmp_path / "afile").write_text("")
    assert main([*predict, str(tmp_path / "afile" / "p.csv")]) == 2
    assert "afile' is a file, not a folder. Choose another path." in capsys.readouterr().err
    monkeypatch.setattr(train_cli.os, "access", lambda *a: False)
    assert main([*predict, str(tmp_path / "p.csv")]) == 2
    assert "is not writable (permission denied)" in capsys.readouterr().err
    monkeypatch.undo()

    def refuse(path: object, text: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(polymodal.checkpoint, "atomic_write_text", refuse)
    assert main([*predict, str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "Cannot write the predictions to -o" in err and "Permission denied" in err


def test_predictions_csv_escapes_formula_cells() -> None:
    from polymodal.cli.train import predictions_csv, spreadsheet_safe

    ids = ["=HYPERLINK(x)", "+1", "-2.5", "@SUM(A1)", "\tx", "\rx", "-x", "plain", "1e5"]
    got = [spreadsheet_safe(i) for i in ids]
    assert got == [
        "'=HYPERLINK(x)",
        "+1",
        "-2.5",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "'-x",
        "plain",
        "1e5",
    ]
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    rows = list(
        csv.reader(
            io.StringIO(predictions_csv(["=a", "b"], logits, "classification", ["=cmd", "ok"]))
        )
    )
    assert rows[0] == ["id", "prediction", "prob_=cmd", "prob_ok"]
    assert rows[1][:2] == ["'=a", "'=cmd"] and rows[2][:2] == ["b", "ok"]
    reg = list(
        csv.reader(
            io.StringIO(predictions_csv(["-id"], torch.tensor([[-1.5]]), "regression", None))
        )
    )
    assert reg[1] == ["'-id", "-1.5"]


def test_train_refuses_a_manifest_with_a_typo_or_an_ambiguous_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "mine.csv"
    manifest.write_text("caption,age,label,split\nhi,1,0,train\nyo,abc,1,train\nho,3,0,test\n")
    cfg = {**TINY, "data": {"manifest": str(manifest), "batch_size": 2}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "mine.csv': column 'age' mixes numbers (2 rows) with other values (1 row)" in err
    assert "row 3: 'abc'" in err and "data.schema in a run config" in err
    manifest.write_text("caption,label,split\nhi,0,train\nyo,0.5,train\nho,1,test\n")
    assert main(["train", str(path), f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "the task of label column 'label' cannot be inferred" in err and "row 3: '0.5'" in err


def test_train_rejects_bad_override_before_running(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tiny_config), f"output_dir={tmp_path}/r", "optim.lrr=1"]) == 2
    assert "Unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_kill_and_resume_matches_uninterrupted_run(tiny_config: Path, tmp_path: Path) -> None:
    common = [str(tiny_config), "checkpoint_every_steps=4"]
    ref, cut, held = tmp_path / "ref", tmp_path / "cut", tmp_path / "held"
    assert main(["train", *common, f"output_dir={ref}"]) == 0

    state = kill_after_first_checkpoint(tiny_config, [*common[1:], f"output_dir={cut}"], held)
    assert not (cut / "results.json").exists()
    assert (cut / "train.lock").is_file()  # left by the killed run: stale, taken over below
    step = state["global_step"]
    assert step == 4 < _history(ref)[-1]["step"]  # killed part-way, after the first checkpoint

    assert main(["train", *common, f"output_dir={cut}", "--resume"]) == 0
    assert not (cut / "train.lock").exists() and not (tmp_path / "cut-2").exists()
    for sub in ("best", "last"):
        a, b = _weights(ref / "checkpoints" / sub), _weights(cut / "checkpoints" / sub)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (sub, k)
    assert _history(cut) == _history(ref)
    res_ref = json.loads((ref / "results.json").read_text())
    res_cut = json.loads((cut / "results.json").read_text())
    assert res_cut["val"] == res_ref["val"] and res_cut["test"] == res_ref["test"]


def test_training_twice_keeps_both_runs_and_overwrite_replaces(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    common = ["train", str(tiny_config), f"output_dir={run}", "optim.epochs=1"]
    assert main(common) == 0
    first = (run / "results.json").read_text()
    capsys.readouterr()
    assert main(common) == 0
    out = capsys.readouterr().out
    assert f"{run} holds another run (kept); this run is in {run}-2 ({run}.latest names " in out
    assert f"run {run}-2: best epoch 1 of 1" in out
    assert (run / "results.json").read_text() == first
    assert (tmp_path / "run.latest").read_text() == "run-2\n"
    # evaluate takes the pointer as a run folder: the newest run
    assert main(["evaluate", str(tmp_path / "run.latest"), "--device", "cpu"]) == 0
    assert f"checkpoint {run}-2/checkpoints/best " in capsys.readouterr().out

    assert main([*common, "optim.epochs=2", "--overwrite"]) == 0
    assert json.loads((run / "results.json").read_text())["epochs_run"] == 2
    assert not (tmp_path / "run-3").exists()
    assert (tmp_path / "run.latest").read_text() == "run\n"
    with pytest.raises(SystemExit):
        main([*common, "--overwrite", "--resume"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_train_refuses_a_folder_a_live_process_trains_in(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-02T03:04:05"}
    (run / "train.lock").write_text(json.dumps(lock))
    assert main(["train", str(tiny_config), f"output_dir={run}", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"locked by another training process (pid {os.getpid()} on " in err
    assert "started 2026-01-02T03:04:05" in err and not (run / "checkpoints").exists()


def test_train_from_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tr = load_dataset("mosi", split="train", modalities=("text", "audio"))
    te = load_dataset("mosi", split="test", modalities=("text", "audio"))
    manifest = tmp_path / "mine.jsonl"
    with manifest.open("w") as f:
        for ds, split in ((tr, "train"), (te, "test")):
            for i in range(0, len(ds), 12):  # every 12th utterance: ~120 train, ~60 test
                s = ds[i]
                row = {
                    "id": s.id,
                    "text": s.modalities["text"].tolist(),  # type: ignore[union-attr]
                    "audio": s.modalities["audio"].tolist(),  # type: ignore[union-attr]
                    "label": ("negative", "positive")[int(s.target)],  # type: ignore[arg-type]
                    "split": split,
                    "group": s.meta["video"],
                }
                f.write(json.dumps(row) + "\n")
    cfg = {**TINY, "data": {"manifest": str(manifest), "batch_size": 32}}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", str(path), f"output_dir={run}", "optim.epochs=1"]) == 0
    assert "accuracy" in capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["accuracy"] > 0.5
    schema = json.loads((run / "schema.json").read_text())
    assert schema["target"]["class_names"] == ["negative", "positive"]
    # evaluate on a manifest: every row (both splits), labels read with the model's classes
    assert main(["evaluate", str(run), "--manifest", str(manifest)]) == 0
    out = capsys.readouterr().out
    rows = sum(1 for _ in manifest.open())
    assert f"split 'mine.jsonl': {rows} examples" in out and "precision" in out
    assert main(["evaluate", str(run), "--manifest", str(manifest), "--split", "val"]) == 2
    assert [m["name"] for m in schema["modalities"]] == ["text", "audio"]


def test_evaluate_reports_per_class_and_writes_a_page(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    assert main(["evaluate", str(trained_run), "-o", str(out), "--html"]) == 0
    text = capsys.readouterr().out
    assert "precision  recall      f1  support" in text and "calibration: ECE" in text
    assert {p.name for p in out.iterdir()} == {
        "report.json",
        "confusion.png",
        "reliability.png",
        "report.html",
    }
    report = json.loads((out / "report.json").read_text())
    results = json.loads((trained_run / "results.json").read_text())
    assert report["accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert sum(map(sum, report["confusion"])) == 752
    assert main(["evaluate", str(trained_run), "--html"]) == 2  # --html needs -o
    assert "give the folder with -o DIR" in capsys.readouterr().err


def test_train_says_what_it_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train"]) == 2
    assert "train needs a CONFIG file: polymodal train configs/" in capsys.readouterr().err
    data = tmp_path / "my.csv"
    data.write_text("id,text,mood\nr1,good,pos\nr2,bad,neg\n")  # no 'label' column
    assert main(["train", str(data)]) == 2
    err = capsys.readouterr().err
    assert "has no column 'label' (from --label)" in err and "Did you mean" not in err
    assert "r1,good" not in err  # the manifest's rows are not printed


def test_train_a_manifest_in_one_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polymodal.training import load_config

    rows = ["id,review,stars,sentiment,speaker"] + [
        f"r{i},{'loved it' if i % 2 else 'hated it'} {i},{i % 5},{'pos' if i % 2 else 'neg'},s{i % 6}"
        for i in range(36)
    ]
    data = tmp_path / "reviews.csv"
    data.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    argv = ["train", str(data), "optim.epochs=1", f"output_dir={run}"]
    assert main([*argv, "--label", "sentiment", "--group", "speaker"]) == 0
    out = capsys.readouterr().out
    assert f"saved as {tmp_path / 'run.yaml'}" in out and "monitor val macro_f1" in out
    cfg = load_config(tmp_path / "run.yaml")  # the saved config is an ordinary one
    assert cfg.model.encoders["review"].name == "minilm"
    assert cfg.model.encoders["tabular"].name == "mlp"
    assert cfg.data.options == {"label_column": "sentiment", "group_column": "speaker"}
    assert (run / "results.json").is_file()
    assert main(["train", str(data), "--label", "mood"]) == 2
    assert "has no column 'mood' (from --label)" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "run.yaml"), "--label", "x"]) == 2
