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


def test_each_stage_announces_itself_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import polymodal.apps.demo as demo

    events: list[str] = []
    monkeypatch.setattr(demo, "encode_transcripts", lambda *a: events.append("encode") or 9)

    def fake_train(cfg: object) -> SimpleNamespace:
        events.append("train")
        return SimpleNamespace(best_val={"accuracy": 0.5}, test={"accuracy": 0.6}, epochs_run=1)

    monkeypatch.setattr(demo, "train", fake_train)
    rows = demo.run_demo(
        epochs=1,
        announce=lambda line: events.append(line),
        on_result=lambda r: events.append(r.method),
    )
    assert len(rows) == len(PLAN)
    assert events[:3] == [
        "encoding the transcripts with frozen MiniLM (once; cached for every run) ...",
        "encode",
        events[2],
    ] and events[2].startswith("  encoded 9 transcripts")
    first, last = PLAN[0][0], PLAN[-1][0]
    assert events[3].startswith(f"training {first} (1/{len(PLAN)}: transcript")
    assert events[4:6] == ["train", first]  # announced, trained, then its result
    assert events[-3].startswith(f"training {last} ({len(PLAN)}/{len(PLAN)}:")
    assert events[-2:] == ["train", last]


def test_encode_transcripts_feeds_every_distinct_transcript_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    import polymodal.encoders
    from polymodal.apps.demo import encode_transcripts

    seen: list[str] = []

    class Recorder(torch.nn.Module):
        def forward(self, batch: object) -> None:
            seen.extend(batch.values)  # type: ignore[attr-defined]

    monkeypatch.setattr(polymodal.encoders, "build_encoder", lambda *a, **k: Recorder())
    n = encode_transcripts(batch_size=500)
    texts = []
    for split in ("train", "test"):
        ds = load_dataset("mosi", split=split, modalities=["transcript"])
        texts += [r.text for r in ds.text_rows("transcript")]
    assert n == len(seen) == len(set(texts)) and set(seen) == set(texts)
