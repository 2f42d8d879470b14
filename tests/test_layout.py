"""The layout's promises: the facade, imports that flow one way, files of one concern."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import polymodal

SRC = Path(__file__).resolve().parents[1] / "src" / "polymodal"


def _imported_by(*modules: str) -> list[str]:
    """The polymodal modules a fresh interpreter has loaded after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('polymodal'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


@pytest.mark.parametrize(
    "modules",
    [
        ("polymodal.retrieval",),
        (  # the verbs and what their commands import
            "polymodal.cli.search",
            "polymodal.cli.embed",
            "polymodal.cli.index_cmd",
            "polymodal.joint.checkpoint",
            "polymodal.joint.embed",
            "polymodal.data.sources",
            "polymodal.data.decode",
            "polymodal.retrieval.index",
            "polymodal.retrieval.exact",
            "polymodal.retrieval.load",
            "polymodal.checkpoint_files",
        ),
        ("polymodal.inference", "polymodal.joint"),
        ("polymodal.robustness", "polymodal.joint"),
        ("polymodal.serve.app", "polymodal.cli.serve"),
    ],
    ids=["retrieval", "search-embed-index", "inference-joint", "robustness", "serve"],
)
def test_search_and_inference_never_import_training(modules: tuple[str, ...]) -> None:
    loaded = _imported_by(*modules)
    assert "polymodal.joint.model" in loaded or modules == ("polymodal.inference",)
    assert [m for m in loaded if m.startswith("polymodal.training")] == []
    assert "polymodal.joint.train" not in loaded


def test_package_import_is_light() -> None:
    assert _imported_by("polymodal") == ["polymodal"]


def test_facade_names_resolve() -> None:
    for name in polymodal.__all__:
        assert getattr(polymodal, name) is not None, name
    from polymodal.training import train

    assert polymodal.train is train
    with pytest.raises(AttributeError, match="has no attribute 'trian'"):
        polymodal.trian  # noqa: B018


def test_no_source_file_over_600_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert long == {}
