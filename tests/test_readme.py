"""The README's examples name configs that exist and load, and its Python examples train on
honest inputs (not the leaky released text/video vectors of ``configs/mosi.yaml``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from polymodal.training import load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NAMED = sorted(set(re.findall(r"configs/[\w.-]+\.yaml", README)))


@pytest.mark.parametrize("path", NAMED)
def test_configs_the_readme_names_load(path: str) -> None:
    load_config(ROOT / path)


def test_python_examples_train_on_honest_inputs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    trained = [b for b in blocks if "load_config(" in b]
    assert trained, "the README has a Python example that loads a config"
    for block in trained:
        assert "configs/mosi.yaml" not in block
    cfg = load_config(ROOT / "configs/mosi_transcript_audio.yaml")
    assert sorted(cfg.data.options["modalities"]) == ["audio", "transcript"]
