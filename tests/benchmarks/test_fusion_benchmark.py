"""benchmarks/fusion.py: every registered fusion is benchmarked with a valid config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fusion as bench
from _common import record
from polymodal.fusion.base import FUSIONS
from polymodal.models.build import is_decision_level
from tests.conftest import require


def test_every_registered_fusion_has_benchmark_settings() -> None:
    assert sorted(bench.FUSION_PARAMS) == sorted(FUSIONS.names())


@pytest.mark.parametrize("dataset", sorted(bench.PLANS))
def test_every_method_config_is_valid(dataset: str) -> None:
    rows = bench.methods(dataset, sorted(bench.FUSION_PARAMS))
    mods = bench.PLANS[dataset]["modalities"]
    assert [r[0] for r in rows[: len(mods)]] == [f"only_{m}" for m in mods]
    assert [r[2] for r in rows[len(mods) :]] == sorted(bench.FUSION_PARAMS)
    for name, ms, fusion in rows:
        cfg = bench.method_config(dataset, ms, fusion, 3, "out")
        assert cfg.seed == 3 and cfg.model.fusion.name == fusion
        assert sorted(cfg.model.encoders) == sorted(ms), name
        params = cfg.model.fusion.params
        if fusion != "late":
            assert params["dropout"] == bench.PLANS[dataset]["dropout"]
        # the params fit the fusion's builder (what build_model checks first)
        wired = {"num_outputs": 2} if is_decision_level(fusion) else {}
        built = FUSIONS.build(fusion, in_dims={m: 8 for m in ms}, **wired, **params)
        assert built.names == sorted(ms)


def test_benchmark_overrides_apply_to_the_config_file() -> None:
    cfg = bench.method_config("har_phone_watch", ("watch",), "early", 0, "out")
    assert cfg.data.options["rate"] == 25.0 and cfg.data.options["modalities"] == ["watch"]
    assert cfg.optim.epochs == 10 and cfg.patience == 3
    assert cfg.model.modality_dropout == {}  # one modality: nothing to drop
    av = bench.method_config("av_digits", ("audio", "image"), "mult", 0, "out")
    assert av.data.options["images_per_recording"] == 2 and av.optim.epochs == 4


def test_config_key_changes_with_the_run_settings() -> None:
    key = bench.config_key("mosi", ("transcript", "audio"), "gmu", 0)
    assert key == bench.config_key("mosi", ("transcript", "audio"), "gmu", 0)
    assert key != bench.config_key("mosi", ("transcript", "audio"), "gmu", 1)
    assert key != bench.config_key("mosi", ("transcript", "audio"), "early", 0)


def _runs(acc: list[float]) -> list[dict[str, float]]:
    return [
        {
            "accuracy": a,
            "macro_f1": a - 0.1,
            "params": 1000.0,
            "fusion_params": 100.0,
            "seconds_per_epoch": 2.0,
            "latency_ms": 1.5,
            "epochs": 4.0,
            "seconds": 10.0,
        }
        for a in acc
    ]


def test_summary_reports_mean_and_std_over_seeds() -> None:
    recs = bench.summarise("mosi", "gmu", ("transcript", "audio"), "gmu", _runs([0.7, 0.8]))
    acc = next(r for r in recs if r["metric"] == "accuracy")
    assert acc["value"] == pytest.approx(0.75) and acc["n_seeds"] == 2
    assert acc["std"] == pytest.approx(0.0707107, abs=1e-6)
    table = bench.summary_table(recs)
    assert "| mosi | gmu | 75.0 ± 7.1 | 65.0 ± 7.1 | 1,000 | 100 | 2.00 | 1.50 | 2 |" in table


def test_plot_writes_a_png(tmp_path: Path) -> None:
    require("matplotlib")
    recs = bench.summarise("mosi", "gmu", ("transcript", "audio"), "gmu", _runs([0.7, 0.8]))
    recs += [record("fusion", "mosi", "only_audio", "accuracy", 0.55)]
    recs += [record("fusion", "mosi", "only_audio", m, 1.0) for m in ("latency_ms", "params")]
    out = tmp_path / "fusion.png"
    assert bench.plot(recs, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
