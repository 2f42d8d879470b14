"""benchmarks/robustness.py: valid run configs, and the scores and verdicts it derives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import robustness as bench


@pytest.mark.parametrize("dataset", sorted(bench.PLANS))
def test_every_run_config_is_valid(dataset: str) -> None:
    rows = bench.methods(dataset, bench.FUSIONS, bench.BALANCE, ["late", "gmu"], ["late"])
    mods = tuple(bench.PLANS[dataset]["modalities"])
    names = [r[0] for r in rows]
    assert names == [f"only_{m}" for m in mods] + list(bench.FUSIONS) + [
        "late+perturb",
        "gmu+perturb",
        "late+perturb_some",
    ] + [f"early+{b}" for b in bench.BALANCE]
    for method, ms, fusion, balance, perturb in rows:
        cfg = bench.run_config(dataset, ms, fusion, balance, 1, "out", perturb)
        assert cfg.optim.balance.method == balance and cfg.model.fusion.name == fusion
        # corruption training on the +perturb rows only, with the benchmark's one setting;
        # +perturb_some on HOLDOUT_TRAIN's families only
        assert (perturb != "none") == ("+perturb" in method)
        trains = perturb != "none"
        assert cfg.optim.perturb.prob == (bench.PERTURB_TRAIN["prob"] if trains else 0.0)
        some = bench.HOLDOUT_TRAIN[dataset] if perturb == "some" else {}
        assert cfg.optim.perturb.perturbations == some
        if trains:  # selected like the fusions, on the monitor over presence conditions
            assert cfg.monitor_without == mods
        if len(ms) > 1:  # every modality hidden at least as often as the floor says
            drop = cfg.model.modality_dropout
            assert sorted(drop) == sorted(ms), method
            assert min(drop.values()) >= bench.MIN_MODALITY_DROPOUT
        else:
            assert cfg.model.modality_dropout == {}
        for enc in cfg.model.encoders.values():
            if enc.name == "minilm":
                assert enc.params["cache_size"] == bench.MINILM_CACHE
    # the configs of distinct runs hash apart, and the evaluation settings are in the hash
    evals = {"levels": [0.0, 0.5], "version": 1}
    keys = {bench.run_key(dataset, r[1], r[2], r[3], 0, evals, r[4]) for r in rows}
    assert len(keys) == len(rows)
    other = {"levels": [0.0, 0.9], "version": 1}
    assert bench.run_key(dataset, *rows[2][1:4], 0, evals) != bench.run_key(
        dataset, *rows[2][1:4], 0, other
    )


def _curve(method: str, values: list[float]) -> list[dict]:
    return [
        {
            "run": method,
            "modality": "phone",
            "perturbation": "missing",
            "severity": s,
            "metric": "accuracy",
            "value": v,
            "std": 0.0,
            "n_seeds": 1,
        }
        for s, v in zip((0.0, 0.5, 1.0), values, strict=True)
    ]


def _run(acc: float, val: float, curve: list[dict] | None = None, **metrics: float) -> dict:
    out = {
        "metrics": {"accuracy": acc, "macro_f1": acc, **metrics},
        "val": val,
        "seconds": 1.0,
        "probe": {"phone": acc - 0.1, "watch": acc - 0.2},
    }
    if curve is not None:
        out.update(curves=curve, shapley={"phone": 0.25, "watch": 0.75})
    return out


def test_summary_scores_and_verdicts_follow_the_definitions() -> None:
    ds = "har_phone_watch"
    plan = {
        m: (ms, f, b, p)
        for m, ms, f, b, p in bench.methods(ds, ["early", "late"], ["gblend"], ["early"], ["early"])
    }
    without = {"macro_f1_without_phone": 0.70, "macro_f1_without_watch": 0.50}
    runs = {
        "only_phone": [_run(0.60, 0.6), _run(0.62, 0.6)],
        "only_watch": [_run(0.70, 0.7), _run(0.72, 0.7)],
        # late: 0.8 -> 0.4; early: 0.9 -> 0.7 (equal seeds: std 0)
        "late": [_run(0.8, 0.75, _curve("late", [0.8, 0.6, 0.4]), **without)] * 2,
        "early": [_run(0.9, 0.85, _curve("early", [0.9, 0.8, 0.7]), **without)] * 2,
        "early+gblend": [_run(0.88, 0.8)] * 2,
        # corruption training: a fusion like the others, never an imbalance method
        "early+perturb": [_run(0.85, 0.7, _curve("early+perturb", [0.85, 0.8, 0.75]))] * 2,
        # trained on some families only: the best validation score, yet never "best fusion"
        "early+perturb_some": [
            _run(0.9, 0.99, _curve("early+perturb_some", [0.9, 0.7, 0.5]), **without)
        ]
        * 2,
    }
    records = bench.summarise(ds, plan, runs)

    def get(method: str, metric: str, **extra: object) -> dict:
        rows = [
            r
            for r in records
            if (r["method"], r["metric"]) == (method, metric)
            and all(r.get(k) == v for k, v in extra.items())
            and ("severity" in r) == ("severity" in extra)
        ]
        assert len(rows) == 1, (method, metric, extra, rows)
        return rows[0]

    assert get("only_phone", "accuracy")["value"] == pytest.approx(0.61)
    assert get("only_phone", "accuracy")["n_seeds"] == 2
    # trapezoid means over severity 0..1: late 0.6, early 0.8; early above late shifted up
    # by 0.1 by (0, 0.1, 0.2): mean 0.1; late against itself: 0
    assert get("late", "relative_robustness", modality="all")["value"] == pytest.approx(0.6)
    assert get("early", "relative_robustness", modality="all")["value"] == pytest.approx(0.8)
    eff = get("early", "effective_robustness", modality="phone", perturbation="missing")
    assert eff["value"] == pytest.approx(0.1) and eff["std"] == pytest.approx(0.0)
    assert get("late", "effective_robustness", modality="all")["value"] == pytest.approx(0.0)
    assert get("early", "shapley_watch")["value"] == pytest.approx(0.75)
    assert get("early+gblend", "probe_accuracy_phone")["value"] == pytest.approx(0.78)
    assert get("early+perturb", "accuracy")["training"] == "perturb"
    assert "training" not in get("early", "accuracy")
    # (0, 0.15, 0.3) above late shifted to 0.85: mean 0.15
    eff = get("early+perturb", "effective_robustness", modality="all")
    assert eff["value"] == pytest.approx(0.15)
    # the one curve (phone, missing) is a family +perturb_some did not train on
    unseen = get("early+perturb", "effective_robustness_unseen", modality="all")
    assert unseen["value"] == pytest.approx(0.15) and unseen["perturbation"] == "unseen"
    assert get("early+perturb_some", "effective_robustness_unseen", modality="all")[
        "value"
    ] == pytest.approx(0.0)
    assert get("early+perturb_some", "accuracy")["training"] == "perturb_some"
    point = get("early", "accuracy", modality="phone", perturbation="missing", severity=0.5)
    assert point["value"] == pytest.approx(0.8)

    table, verdicts = bench.tables(records)
    assert "| har_phone_watch | gblend | 88.0 ± 0.0 | phone 78.0 ± 0.0, watch 68.0 ± 0.0 |" in table
    assert "| har_phone_watch | perturb |" not in table
    assert not any("early+perturb: probe accuracy" in v for v in verdicts)
    # best by validation is early: without phone 70.0 vs watch alone 71.0 (-1.0): meets;
    # without watch 50.0 vs phone alone 61.0: misses
    assert any("without phone 70.0 vs only_watch 71.0 (-1.0 points): meets" in v for v in verdicts)
    assert any(
        "without watch 50.0 vs only_phone 61.0 (-11.0 points): misses" in v for v in verdicts
    )
    assert any("effective robustness of early against late fusion +10.00" in v for v in verdicts)
    assert not any("best fusion by validation = early+perturb_some" in v for v in verdicts)
    assert any(
        "the families early+perturb_some did not train on (it trained on phone: "
        "gaussian_noise; watch: gaussian_noise): early +10.0 ± 0.0, early+perturb +15.0 ± 0.0, "
        "early+perturb_some +0.0 ± 0.0" in v
        for v in verdicts
    )
    # the imbalance target: the weakest plain probe is watch (0.70 - 0.2); gblend's watch
    # probe 0.68 is -2.0 points, at -2.0 points of fused accuracy: misses
    assert any(
        "early+gblend: probe accuracy of the weakest encoder (watch) -2.0 points over plain "
        "early fusion, fused accuracy -2.0: misses" in v
        for v in verdicts
    )


def test_hash_skips_only_fields_at_their_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # every skipped field holds exactly the listed default in the benchmark's configs, so a
    # logged run is reused only when it ran with that value; another value is hashed
    cfg = bench.run_config("har_phone_watch", ("phone", "watch"), "early", "ogm_ge", 0, "o")
    blob = cfg.to_dict()
    for dotted, default in bench.HASH_SKIPS_DEFAULT.items():
        node = blob
        for key in dotted.split("."):
            node = node[key]
        assert node == default, dotted
    evals = {"levels": [0.0], "version": 1}
    key = bench.run_key("har_phone_watch", ("phone", "watch"), "early", "unimodal", 0, evals)
    original = bench.run_config

    def heavier(*args: object) -> object:
        return original(*args).replace(**{"optim.balance.unimodal_weight": 2.0})  # type: ignore[arg-type]

    monkeypatch.setattr(bench, "run_config", heavier)
    other = bench.run_key("har_phone_watch", ("phone", "watch"), "early", "unimodal", 0, evals)
    assert other != key
    monkeypatch.setattr(bench, "run_config", original)
    # the missing-modality models select on monitor_without (so runs logged before it, which
    # selected on the plain monitor, are not reused); the other balance methods do not
    fused = bench.run_config("har_phone_watch", ("phone", "watch"), "late", "none", 0, "o")
    assert fused.monitor_without == ("phone", "watch")
    assert cfg.monitor_without == ()
    assert (
        bench.run_config("har_phone_watch", ("phone",), "early", "none", 0, "o").monitor_without
        == ()
    )

    def plain(*args: object) -> object:
        return original(*args).replace(monitor_without=[])  # type: ignore[arg-type]

    monkeypatch.setattr(bench, "run_config", plain)
    assert (
        bench.run_key("har_phone_watch", ("phone", "watch"), "early", "unimodal", 0, evals) != key
    )
