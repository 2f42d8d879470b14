"""Training on data where some examples lack a modality entirely uses the rest of each one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from polymodal.cli.main import main
from polymodal.data.manifest import ManifestDataset
from polymodal.inference import load_trained


def _manifest(path: Path, n: int = 96) -> None:
    """Label = sign of the first feature of ``good``; ``noise`` carries nothing.

    Every third example lacks ``good`` (its sensor failed for the whole recording) and
    every fifth lacks ``noise``: those rows keep what they have.
    """
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(n):
            y = i % 2
            good = [(1.0 if y else -1.0) + rng.gauss(0, 0.3)] + [rng.gauss(0, 1) for _ in range(3)]
            row: dict[str, object] = {"id": f"r{i}", "label": "pos" if y else "neg"}
            row["good"] = None if i % 3 == 2 else good
            row["noise"] = None if i % 5 == 4 else [rng.gauss(0, 1) for _ in range(4)]
            row["group"] = f"g{i % 8}"
            f.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("fusion", ["early", "mult"])
def test_examples_missing_a_modality_train_and_predict_from_the_rest(
    tmp_path: Path, fusion: str
) -> None:
    manifest = tmp_path / "data.jsonl"
    _manifest(manifest)
    params = {"hidden_dim": 8} if fusion == "early" else {"hidden_dim": 8, "num_heads": 2}
    if fusion == "mult":
        params["missing_token"] = True
    cfg = {
        "data": {
            "manifest": str(manifest),
            "train_split": None,
            "test_split": None,
            "val_fraction": 0.25,
            "batch_size": 8,
        },
        "model": {
            "encoders": {
                "good": {"name": "mlp", "params": {"dim": 8}},
                "noise": {"name": "mlp", "params": {"dim": 8}},
            },
            "fusion": {"name": fusion, "params": params},
        },
        "optim": {"epochs": 15, "lr": 1e-2},
        "device": "cpu",
        "progress": False,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["val"]["accuracy"] >= 0.75  # the informative modality was learned

    trained = load_trained(tmp_path / "run")
    ds = ManifestDataset(manifest, schema=trained.schema)
    batch = ds.batch(range(len(ds)))
    assert batch["good"].present.tolist() == [i % 3 != 2 for i in range(len(ds))]
    with torch.no_grad():
        pred = trained.model(batch).logits.argmax(1)
    rows_with_good = batch["good"].present
    labels = torch.tensor([i % 2 for i in range(len(ds))])
    names = list(trained.schema.target.class_names or [])
    truth = torch.tensor([names.index("pos" if y else "neg") for y in labels.tolist()])
    # where the informative modality is there, the model reads it; elsewhere it still predicts
    assert (pred[rows_with_good] == truth[rows_with_good]).float().mean() >= 0.9
    # rows without it are predicted from the noise alone: near chance, and never an error
    assert 0.2 <= (pred[~rows_with_good] == truth[~rows_with_good]).float().mean() <= 0.8
