"""``polymodal index build`` and ``search`` on damaged folders: each file read is checked
and named, with the fix, in one line (a tiny joint model, no data set needed)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.cli.main import main
from polymodal.data.modality import ModalitySpec
from polymodal.joint.checkpoint import save_joint_checkpoint
from polymodal.joint.embed import Embedded, write_embeddings
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.models.config import EncoderConfig


def _model() -> JointEmbeddingModel:
    mods = tuple(
        JointModalityConfig(
            ModalitySpec(n, "tabular", shape=(3,)), EncoderConfig("mlp", {"dim": 4})
        )
        for n in ("image", "text")
    )
    return JointEmbeddingModel(JointConfig(mods, dim=8))


@pytest.fixture()
def folders(tmp_path: Path) -> dict[str, Path]:
    """A checkpoint, its embeddings (5 image items) and an index built from them."""
    model = _model()
    ckpt = save_joint_checkpoint(tmp_path / "ckpt", model)
    vectors = torch.nn.functional.normalize(torch.randn(5, 8), dim=1).numpy()
    ids = [f"e{i}" for i in range(5)]
    embedded = {"image": Embedded(vectors, ids, [{"example": i} for i in ids])}
    emb = tmp_path / "emb"
    write_embeddings(emb, embedded, model, checkpoint=ckpt, source="toy", split=None)
    assert main(["index", "build", str(emb), "-o", str(tmp_path / "index")]) == 0
    return {"ckpt": ckpt, "emb": emb, "index": tmp_path / "index", "tmp": tmp_path}


def _edit_json(file: Path, **changes: object) -> None:
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))


def _vectors(file: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    np.save(file, change(np.load(file)))


def _nan(v: np.ndarray) -> np.ndarray:
    v[3, 0] = np.nan
    return v


def _zero(v: np.ndarray) -> np.ndarray:
    v[1] = 0.0
    return v


# file (relative to the embeddings folder), damage, what the error says after its path
EMBEDDINGS_DAMAGE: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "manifest empty": ("embeddings.json", lambda f: f.write_text(""), "is empty"),
    "manifest not JSON": ("embeddings.json", lambda f: f.write_text("{"), "is not valid JSON"),
    "manifest a list": ("embeddings.json", lambda f: f.write_text("[]"), "must hold a JSON object"),
    "manifest of another format": (
        "embeddings.json",
        lambda f: _edit_json(f, format="npz"),
        "is not a polymodal embeddings manifest",
    ),
    "manifest dim a string": (
        "embeddings.json",
        lambda f: _edit_json(f, dim="8"),
        ": 'dim' must be an integer >= 1, got '8'",
    ),
    "manifest counts a list": (
        "embeddings.json",
        lambda f: _edit_json(f, counts=[5]),
        ": 'counts' must be an object of modality -> item count",
    ),
    "ids not JSON": ("image/ids.json", lambda f: f.write_text('["e0", '), "is not valid JSON"),
    "ids not strings": (
        "image/ids.json",
        lambda f: f.write_text("[0, 1, 2, 3, 4]"),
        "must hold a list of item ids",
    ),
    "ids repeated": (
        "image/ids.json",
        lambda f: f.write_text(json.dumps(["e0", "e1", "e2", "e3", "e0"])),
        "holds 5 ids, some repeated, but embeddings.json counts 5 items",
    ),
    "metadata empty": ("image/metadata.json", lambda f: f.write_text(" "), "is empty"),
    "metadata too short": (
        "image/metadata.json",
        lambda f: f.write_text("[{}]"),
        "holds 1 entries, not 5",
    ),
    "vectors cut short": (
        "image/vectors.npy",
        lambda f: f.write_bytes(f.read_bytes()[:-9]),
        "is not a readable .npy array",
    ),
    "vectors of another dim": (
        "image/vectors.npy",
        lambda f: _vectors(f, lambda v: v[:, :6]),
        "holds a float32 array of shape (5, 6), but embeddings.json says 5 float vectors of 8",
    ),
    "vectors NaN": (
        "image/vectors.npy",
        lambda f: _vectors(f, _nan),
        "row 3 (id 'e3') holds NaN or infinite values",
    ),
    "vectors with a zero row": (
        "image/vectors.npy",
        lambda f: _vectors(f, _zero),
        ": ExactIndex: vectors[1] is all zeros",
    ),
}


@pytest.mark.parametrize("case", list(EMBEDDINGS_DAMAGE))
def test_index_build_names_the_damaged_file(
    folders: dict[str, Path], case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, damage, what = EMBEDDINGS_DAMAGE[case]
    damage(folders["emb"] / name)
    capsys.readouterr()
    assert main(["index", "build", str(folders["emb"]), "-o", str(folders["tmp"] / "i2")]) == 2
    err = capsys.readouterr().err
    file = folders["emb"] / name
    expected = f"{file}{what}" if what.startswith(":") else f"{file} {what}"
    assert err.startswith(f"polymodal index: error: {expected}"), err
    assert len(err.splitlines()) == 1 and not (folders["tmp"] / "i2").exists()


SOURCE_DAMAGE: dict[str, tuple[str, str]] = {
    "empty": ("", "source.json is empty"),
    "not JSON": ('{"checkpoint": ', "source.json is not valid JSON (Expecting value"),
    "a list": ('["ckpt"]', "source.json must hold a JSON object, got list"),
    "without checkpoint": ('{"model": "x"}', "source.json: 'checkpoint' must be the path"),
    "checkpoint a number": ('{"checkpoint": 3}', "'checkpoint' must be the path .* got 3;"),
}


@pytest.mark.parametrize("case", list(SOURCE_DAMAGE))
def test_search_names_a_damaged_source_json(
    folders: dict[str, Path], case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text, what = SOURCE_DAMAGE[case]
    (folders["index"] / "source.json").write_text(text)
    capsys.readouterr()
    assert main(["search", str(folders["index"]), "--text", "a dog"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal search: error: ") and len(err.splitlines()) == 1
    assert str(folders["index"]) in err and re.search(what.replace("(", r"\("), err)
    assert "Pass --checkpoint, or build the index again" in err


def test_search_names_source_json_when_its_checkpoint_moved(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folders["ckpt"].rename(folders["tmp"] / "moved")
    capsys.readouterr()
    assert main(["search", str(folders["index"]), "--text", "a dog"]) == 2
    err = capsys.readouterr().err
    assert f"{folders['index'] / 'source.json'} names the checkpoint" in err
    assert "pass --checkpoint NEW_PATH" in err and len(err.splitlines()) == 1
    argv = ["search", str(folders["index"]), "--text", "a dog", "--checkpoint"]
    assert main([*argv, str(folders["tmp"] / "moved")]) == 2  # found; a tabular model
    assert "cannot embed a text query" in capsys.readouterr().err
