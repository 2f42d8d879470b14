"""End to end on real Flickr8k images: ``polymodal train`` a joint config, resume (after a
SIGKILL too), ``embed``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from polymodal.cli.main import main
from polymodal.joint.checkpoint import load_joint_checkpoint
from tests.cli.killing import assert_same_checkpoints, kill_after_first_checkpoint

pytestmark = pytest.mark.usefixtures("data_root")


def _config(tmp: Path) -> dict[str, Any]:
    """8 images per split at 64 px (EfficientNet is the cost), a 16-d linear space."""
    return {
        "task": "contrastive",
        "output_dir": str(tmp / "run"),
        "feature_cache": str(tmp / "features"),  # never ~/.cache
        "model": {
            "dim": 16,
            "anchor": "image",
            "modalities": {
                "image": {
                    "spec": {"kind": "image", "shape": [3, 224, 224]},
                    "encoder": {"name": "efficientnet_lite0"},
                    "projection": "linear",
                },
                "text": {
                    "spec": {"kind": "text"},
                    "encoder": {"name": "minilm"},
                    "projection": "mlp",
                    "hidden_dim": 32,
                },
            },
        },
        "pairs": {
            "flickr8k": {
                "dataset": "flickr8k",
                "other": "text",
                "options": {"image_size": 64},
                "limit": 8,
            }
        },
        "optim": {"epochs": 5, "batch_size": 8, "warmup_steps": 0, "all_positives": True},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("joint_cli")
    cfg = tmp / "tiny_flickr.yaml"
    cfg.write_text(yaml.safe_dump(_config(tmp)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", str(cfg), "optim.epochs=2", "seed=1"])
    return {"tmp": tmp, "config": cfg, "code": code, "run": tmp / "run", "out": out.getvalue()}


def test_train_writes_a_checkpoint_embed_accepts(run: dict[str, Any]) -> None:
    assert run["code"] == 0
    ckpt = run["run"] / "checkpoints" / "best"
    model, state = load_joint_checkpoint(ckpt)
    assert model.modalities == ["image", "text"] and model.dim == 16
    assert set(state["val"]) >= {"image2text_r@1", "text2image_r@1", "r1_mean"}
    results = json.loads((run["run"] / "results.json").read_text())
    assert results["task"] == "contrastive" and results["monitor"] == "r1_mean"
    assert set(results["test"]) >= {"image2text_r@1", "text2image_r@1", "r1_mean"}
    assert results["val"] == state["val"] and results["best_epoch"] == state["best_epoch"]
    assert results["epochs_run"] <= 2  # the command-line override won over the file
    assert results["feature_seconds"] > 0 and set(results["temperatures"]) == {"image-text"}
    history = (run["run"] / "metrics.jsonl").read_text().splitlines()
    assert len(history) == results["epochs_run"]
    assert (run["run"] / "metrics.csv").read_text().startswith("epoch,step,lr,train_loss,val_")
    saved = yaml.safe_load((run["run"] / "config.yaml").read_text())
    assert saved["seed"] == 1 and saved["optim"]["epochs"] == 2
    # 3 features folders per modality (train, val, test), all under the given cache root
    assert len(list((run["tmp"] / "features").iterdir())) == 6
    out = run["tmp"] / "emb"
    argv = ["embed", str(ckpt), "flickr8k", "--split", "test", "--limit", "2", "-o", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "embeddings.json").read_text())["counts"] == {"image": 2, "text": 10}


def test_train_prints_val_and_test_table(run: dict[str, Any]) -> None:
    assert run["code"] == 0
    lines = run["out"].splitlines()
    summary = next(ln for ln in lines if ln.startswith("run "))
    assert "checkpoints/best" in summary and "best epoch" in summary
    header = lines.index(next(ln for ln in lines if ln.startswith("metric ")))
    assert lines[header].split() == ["metric", "val", "test"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[header + 1 :] if ln.strip()}
    assert {"image2text_r@1", "text2image_r@10", "r1_mean"} <= set(rows)
    assert all(0.0 <= float(v) <= 1.0 for v in rows["r1_mean"])


def test_resume_continues_joint_runs(
    run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # The finished run resumed with its own config: nothing left to train, the same table.
    before = json.loads((run["run"] / "results.json").read_text())
    assert main(["train", str(run["config"]), "optim.epochs=2", "seed=1", "--resume"]) == 0
    out = capsys.readouterr().out
    table = run["out"][run["out"].index("metric ") :]
    assert out[out.index("metric ") :] == table
    after = json.loads((run["run"] / "results.json").read_text())
    assert {k: v for k, v in after.items() if k != "feature_seconds"} == {
        k: v for k, v in before.items() if k != "feature_seconds"
    }
    # Another config (the file's seed and epochs, not the run's): refused, in one line.
    assert main(["train", str(run["config"]), "--resume"]) == 2
    # stderr: the progress log (features), then the error in one line, whatever tests ran
    # before (the log follows sys.stderr; it once wrote to a closed earlier capture).
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("polymodal train: error: Cannot resume") and "['optim', 'seed']" in last
    assert "features: flickr8k train image" in err and "Traceback" not in err


def test_kill_and_resume_matches_uninterrupted_run(run: dict[str, Any]) -> None:
    """SIGKILL a contrastive run mid-epoch; resumed, it ends bitwise where an uninterrupted
    run ends (projections, learnt temperature, history, metrics)."""
    tmp = run["tmp"] / "kill"
    # 2 steps an epoch, `last` after every step: the first lands in the middle of epoch 1.
    # Dropout: the resumed run must restore the RNG too.  The module's features are reused.
    common = [
        "seed=3",
        "optim.epochs=3",
        "optim.batch_size=4",
        "checkpoint_every_steps=1",
        "model.modalities.text.dropout=0.2",
        "patience=null",
    ]
    ref, cut = tmp / "ref", tmp / "cut"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(run["config"]), *common, f"output_dir={ref}"]) == 0

    overrides = [*common, f"output_dir={cut}"]
    state = kill_after_first_checkpoint(run["config"], overrides, tmp / "held")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 1, 1)
    assert not (cut / "results.json").exists()

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(run["config"]), *overrides, "--resume"]) == 0
    assert_same_checkpoints(ref, cut, strategy_state=True)  # weights, learnt logit scales
    assert _history(cut) == _history(ref) and len(_history(ref)) == 3
    res_ref = json.loads((ref / "results.json").read_text())
    res_cut = json.loads((cut / "results.json").read_text())
    for key in ("val", "test", "best_epoch", "temperatures"):
        assert res_cut[key] == res_ref[key], key


def _history(run_dir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_unknown_key_is_one_line_error(
    run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(run["config"]), "pairs.flickr8k.limt=4"]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'pairs.flickr8k.limt'" in err and "Did you mean 'limit'?" in err
    assert err.count("\n") == 1


def test_attention_pooling_trains_on_cached_maps_and_embeds(run: dict[str, Any]) -> None:
    tmp = run["tmp"] / "attention"
    argv = ["train", str(run["config"]), "model.modalities.image.pool=attention"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "model.modalities.image.pool_heads=4", f"output_dir={tmp}"]) == 0
    # the image maps are cached once per split, as sequences, next to the pooled entries
    folders = [p.name for p in (run["tmp"] / "features").iterdir()]
    assert sum("-image_seq-" in f for f in folders) == 3
    info = json.loads(next((run["tmp"] / "features").glob("*-train-image_seq-*/info.json")).read_text())  # fmt: skip
    assert info["dim"] == 4 * 1280  # 64 px images: a 2 x 2 map of 1280 features
    model, _ = load_joint_checkpoint(tmp / "checkpoints" / "best")
    assert model.pools_sequence("image") and not model.pools_sequence("text")
    out = tmp / "emb"
    argv = ["embed", str(tmp / "checkpoints" / "best"), "flickr8k", "--split", "test"]
    assert main([*argv, "--limit", "2", "-o", str(out)]) == 0
    assert json.loads((out / "embeddings.json").read_text())["counts"] == {"image": 2, "text": 10}
