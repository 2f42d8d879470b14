"""``optim.perturb``: training batches damaged at random by the robustness perturbations
(:mod:`polymodal.training.perturb`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from polymodal.cli.main import main
from polymodal.data import Schema
from polymodal.data.context import VideoDataset
from polymodal.data.modality import ModalitySpec, TargetSpec
from polymodal.data.sample import Batch, ModalityBatch
from polymodal.inference import data_loader, evaluate, load_trained
from polymodal.models.build import build_model
from polymodal.robustness import perturb_batch
from polymodal.training import SupervisedOptim, Trainer, load_config
from polymodal.training.config import ContextOptim, OptimConfig, PerturbConfig
from polymodal.training.context import ContextStrategy
from polymodal.training.perturb import (
    TrainPerturbation,
    build_perturbation,
    perturbation_plan,
)
from polymodal.training.supervised import SupervisedStrategy
from tests.models.test_context import ToyVideos, context_model
from tests.training.test_balance import SCHEMA, Toy, _cfg, _Crash, _har_config
from tests.training.test_context_task import toy_config

TEXT_SCHEMA = Schema(
    (ModalitySpec("t", "text"), ModalitySpec("x", "features", shape=(3,))),
    TargetSpec("classification", 2, ("neg", "pos")),
)


def _batch(n: int = 16) -> Batch:
    return next(iter(data_loader(Toy(n, 3), n)))


def test_default_plan_is_every_perturbation_of_each_kind_but_missing() -> None:
    plan = perturbation_plan(PerturbConfig(prob=0.5), SCHEMA)
    assert plan == {
        "a": ["feature_drop", "gaussian_noise"],
        "b": ["feature_drop", "gaussian_noise"],
    }
    plan = perturbation_plan(PerturbConfig(prob=0.5), TEXT_SCHEMA)
    assert plan["t"] == ["char_swap", "typo", "word_drop"]
    # listed modalities only; an empty list leaves a modality clean; repeats collapse
    cfg = PerturbConfig(perturbations={"b": ["missing", "missing"], "a": []})
    assert perturbation_plan(cfg, SCHEMA) == {"b": ["missing"]}


def test_plan_errors_name_the_key_and_the_fix() -> None:
    with pytest.raises(
        ValueError,
        match=r"optim.perturb.perturbations names modality 'c', which the data does not have; "
        r"choose from \['a', 'b'\]",
    ):
        perturbation_plan(PerturbConfig(perturbations={"c": ["gaussian_noise"]}), SCHEMA)
    with pytest.raises(
        ValueError,
        match=r"optim.perturb.perturbations.t lists 'blur', which does not apply to a modality "
        r"of kind 'text'; choose from \['char_swap', 'missing', 'typo', 'word_drop'\]",
    ):
        perturbation_plan(PerturbConfig(perturbations={"t": ["blur"]}), TEXT_SCHEMA)
    with pytest.raises(ValueError, match=r"Did you mean 'typo'"):
        perturbation_plan(PerturbConfig(perturbations={"t": ["typos"]}), TEXT_SCHEMA)
    with pytest.raises(ValueError, match=r"optim.perturb.prob"):
        SupervisedOptim.from_dict({"perturb": {"prob": 1.5}}, "optim")


def test_config_reads_from_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_cfg(tmp_path).to_yaml())
    cfg = load_config(
        path, ["optim.perturb.prob=0.5", "optim.perturb.perturbations={a: [gaussian_noise]}"]
    )
    assert cfg.optim.perturb == PerturbConfig(prob=0.5, perturbations={"a": ["gaussian_noise"]})
    assert build_perturbation(PerturbConfig(), SCHEMA, 0) is None  # prob 0: off
    assert build_perturbation(PerturbConfig(prob=1.0, perturbations={"a": []}), SCHEMA, 0) is None


def test_perturbation_damages_planned_modalities_deterministically() -> None:
    batch = _batch()
    cfg = PerturbConfig(prob=1.0, max_severity=1.0, perturbations={"a": ["gaussian_noise"]})
    first, second = TrainPerturbation(cfg, SCHEMA, 0), TrainPerturbation(cfg, SCHEMA, 0)
    out = first(batch)
    assert not torch.equal(out["a"].values, batch["a"].values)
    assert out["b"] is batch["b"] and out.target is batch.target and out.ids == batch.ids
    assert torch.equal(second(batch)["a"].values, out["a"].values)  # same seed, same damage
    other = TrainPerturbation(cfg, SCHEMA, 1)(batch)
    assert not torch.equal(other["a"].values, out["a"].values)
    # torchrun's ranks damage their shards independently
    rank1 = TrainPerturbation(cfg, SCHEMA, 0, rank=1)(batch)
    assert not torch.equal(rank1["a"].values, out["a"].values)
    # the batch itself is untouched, and the next call draws afresh
    assert torch.equal(batch["a"].values, _batch()["a"].values)
    assert not torch.equal(first(batch)["a"].values, out["a"].values)


def test_prob_sets_how_often_a_modality_is_damaged() -> None:
    batch = _batch()
    pert = TrainPerturbation(
        PerturbConfig(prob=0.3, perturbations={"a": ["feature_drop"]}), SCHEMA, 0
    )
    hits = sum(not torch.equal(pert(batch)["a"].values, batch["a"].values) for _ in range(400))
    # a drawn severity near 0 can leave a batch unchanged, so slightly under 0.3 * 400
    assert 90 <= hits <= 130


def test_texts_are_damaged_before_the_encoder() -> None:
    texts = ["the cat sat on the mat", "a dog ran in the park"]
    batch = Batch(
        {
            "t": ModalityBatch(list(texts), torch.ones(2, dtype=torch.bool)),
            "x": ModalityBatch(torch.zeros(2, 3), torch.ones(2, dtype=torch.bool)),
        },
        torch.zeros(2, dtype=torch.long),
        ["p", "q"],
    )
    cfg = PerturbConfig(prob=1.0, max_severity=1.0, perturbations={"t": ["word_drop"]})
    pert = TrainPerturbation(cfg, TEXT_SCHEMA, 0)
    outs = [pert(batch)["t"].values for _ in range(5)]
    assert any(o != texts for o in outs)
    for out in outs:  # words dropped, never invented
        for clean, damaged in zip(texts, out, strict=True):
            assert set(damaged.split()) <= set(clean.split())


def _check_damaged_training(
    fit: Callable[[dict[str, Any], str], dict[str, torch.Tensor]], seen: list[torch.Tensor]
) -> None:
    """``fit(perturb, name)`` trains a run and returns its weights while ``seen`` collects
    the training inputs of modality ``a``: with every batch damaged, each input differs from
    clean training's, a second run repeats the first exactly, and the weights differ."""
    clean = fit({}, "clean")
    clean_inputs = list(seen)
    seen.clear()
    damage = {"prob": 1.0, "max_severity": 1.0, "perturbations": {"a": ["gaussian_noise"]}}
    noisy = fit(damage, "noisy")
    assert len(seen) == len(clean_inputs)
    assert all(not torch.equal(a, b) for a, b in zip(seen, clean_inputs, strict=True))
    assert all(torch.equal(noisy[k], v) for k, v in fit(damage, "again").items())
    assert any(not torch.equal(noisy[k], clean[k]) for k in noisy)


def test_training_sees_the_damaged_batches(tmp_path: Path) -> None:
    """The strategy's loss reads the perturbed batch; runs are reproducible and differ from
    clean training; validation is never perturbed."""
    seen: list[torch.Tensor] = []

    def fit(perturb: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
        cfg = _cfg(tmp_path / name, None, perturb=perturb)
        model = build_model(cfg.model, SCHEMA, seed=0)
        strategy = SupervisedStrategy(cfg, model, Toy(64, 0), Toy(32, 1, "val"))
        forward = model.forward

        def spy(batch: Batch) -> Any:
            if model.training:
                seen.append(batch["a"].values.clone())
            return forward(batch)

        model.forward = spy  # type: ignore[method-assign]
        res = Trainer(cfg, strategy).fit()
        val = Toy(32, 1, "val")
        assert res.best_val is not None
        # the kept weights' validation score is that of the clean validation data
        model.forward = forward  # type: ignore[method-assign]
        assert res.best_val["accuracy"] == pytest.approx(evaluate(model, val)["accuracy"])
        return {k: v.clone() for k, v in model.state_dict().items()}

    _check_damaged_training(fit, seen)


def test_perturbed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """The perturbation generator is checkpointed: a run killed mid-way and resumed damages
    the same batches as one that was never interrupted."""
    perturb = {"prob": 0.5, "max_severity": 1.0}

    def strategy(cfg: Any) -> SupervisedStrategy:
        return SupervisedStrategy(
            cfg, build_model(cfg.model, SCHEMA, seed=0), Toy(64, 0), Toy(32, 1, "val")
        )

    cfg = _cfg(tmp_path / "a", None, perturb=perturb).replace(checkpoint_every_steps=3)
    whole = strategy(cfg)
    Trainer(cfg, whole).fit()
    cfg_b = cfg.replace(output_dir=str(tmp_path / "b" / "run"))
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg_b, strategy(cfg_b), [_Crash(5)]).fit()
    resumed = strategy(cfg_b)
    Trainer(cfg_b, resumed).fit(resume=True)
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


class Redundant(Toy):
    """Label = sign(a[0]); b[0] is a noisy copy of a[0], so ``b`` can stand in for ``a``."""

    def __init__(self, n: int, seed: int, split: str = "train") -> None:
        super().__init__(n, seed, split)
        g = torch.Generator().manual_seed(seed + 100)
        self.b[:, 0] = self.a[:, 0] + 0.5 * torch.randn(n, generator=g)
        self.y = (self.a[:, 0] > 0).long()


def test_noise_training_makes_the_model_robust_to_that_noise(tmp_path: Path) -> None:
    """With ``a`` damaged during training, the model learns to lean on ``b`` too: under strong
    noise on ``a`` at test it beats the same model trained on clean data (mean of 3 seeds)."""
    test = Redundant(256, 2, "test")

    def noisy_accuracy(perturb: dict[str, Any], seed: int) -> float:
        cfg = _cfg(tmp_path / f"{bool(perturb)}{seed}", None, epochs=10, perturb=perturb)
        cfg = cfg.replace(seed=seed, progress=False)
        model = build_model(cfg.model, SCHEMA, seed=seed)
        Trainer(
            cfg, SupervisedStrategy(cfg, model, Redundant(256, 0), Redundant(64, 1, "val"))
        ).fit()
        g = torch.Generator().manual_seed(0)
        damage = lambda b: perturb_batch(b, SCHEMA, "a", "gaussian_noise", 1.0, g)  # noqa: E731
        return evaluate(model, test, transform=damage)["accuracy"]

    train_noise = {"prob": 0.5, "max_severity": 1.0, "perturbations": {"a": ["gaussian_noise"]}}
    clean = sum(noisy_accuracy({}, s) for s in range(3)) / 3
    robust = sum(noisy_accuracy(train_noise, s) for s in range(3)) / 3
    assert robust > clean + 0.01, (robust, clean)


def test_context_runs_train_on_damaged_utterances(tmp_path: Path) -> None:
    """``task: context`` takes ``optim.perturb`` too: its utterances are damaged before the
    utterance model, reproducibly; a base OptimConfig still builds the config."""

    cfg = toy_config(tmp_path)
    assert isinstance(cfg.optim, ContextOptim) and cfg.optim.epochs == 3
    assert cfg.optim == ContextOptim.from_dict(OptimConfig(epochs=3).to_dict())
    train, val = VideoDataset(ToyVideos()).split_videos(0.34, seed=0)
    seen: list[torch.Tensor] = []

    def fit(perturb: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
        run = toy_config(tmp_path / name, **{"optim.perturb": perturb})
        model = context_model("gru")
        forward = model.utterance_model.forward

        def spy(batch: Batch, *args: Any) -> Any:
            if model.training:
                seen.append(batch["a"].values.clone())
            return forward(batch, *args)

        model.utterance_model.forward = spy  # type: ignore[method-assign]
        Trainer(run, ContextStrategy(run, model, train, val, val)).fit()
        return {k: v.clone() for k, v in model.state_dict().items()}

    _check_damaged_training(fit, seen)
    with pytest.raises(ValueError, match=r"optim.perturb.perturbations names modality 'z'"):
        bad = toy_config(tmp_path, **{"optim.perturb": {"perturbations": {"z": ["missing"]}}})
        ContextStrategy(bad, context_model("gru"), train, val, val)


def test_cli_trains_on_damaged_real_sensor_windows(tmp_path: Path, data_root: Path) -> None:
    """``polymodal train CONFIG optim.perturb.prob=1`` on real har_phone_watch windows: both
    devices of every training batch damaged by a time-series perturbation, the run finishes,
    and its saved config keeps the setting (so ``polymodal robustness`` can compare it)."""

    path = _har_config(tmp_path, "none")
    overrides = ["optim.epochs=1", "optim.perturb.prob=1.0", "optim.perturb.max_severity=1.0"]
    assert main(["train", str(path), *overrides]) == 0
    trained = load_trained(tmp_path / "none")
    assert trained.config["optim"]["perturb"] == {
        "prob": 1.0,
        "max_severity": 1.0,
        "perturbations": {},
    }
    results = json.loads((tmp_path / "none" / "results.json").read_text())
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
