from __future__ import annotations

import pytest

from polymodal.apps.demo import PLAN, DemoRun, demo_config, format_table
from polymodal.cli.main import main
from polymodal.data.datasets import load_dataset
from polymodal.models import build_model


@pytest.mark.parametrize(("method", "mods", "fusion"), PLAN)
def test_every_demo_run_has_a_valid_config(method: str, mods: tuple[str, ...], fusion: str) -> None:
    cfg = demo_config(mods, fusion, seed=3, epochs=2)
    assert cfg.seed == 3 and cfg.optim.epochs == 2
    assert sorted(cfg.model.encoders) == sorted(mods)
    assert cfg.data.options["modalities"] == list(mods)
    assert cfg.model.fusion.name == fusion
    # Fused runs drop modalities during training; a single modality cannot be dropped.
    assert bool(cfg.model.modality_dropout) == (len(mods) > 1)
    if "transcript" not in mods:  # building MiniLM is covered by the encoder tests
        schema = load_dataset("mosi", split="test", modalities=mods).schema
        model = build_model(cfg.model, schema)
        assert model.num_outputs == 2


def test_format_table_rows_and_percentages() -> None:
    row = DemoRun("early fusion", ("transcript", "audio"), "early", 0.75, 0.7861, 0.7712, 6, 12.3)
    lines = format_table([row]).splitlines()
    assert lines[0].split()[:2] == ["model", "modalities"]
    assert "transcript+audio" in lines[2]
    assert "78.6%" in lines[2] and "77.1%" in lines[2] and "75.0%" in lines[2]


def test_demo_rejects_bad_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
