"""The contrastive task on the one loop: retrieval, binding, all positives, resume, configs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from polymodal.data.modality import ModalitySpec
from polymodal.joint.checkpoint import CONFIG_FILE as JOINT_CONFIG_FILE
from polymodal.joint.checkpoint import load_joint_checkpoint
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.joint.pairs import PairedFeatures, PairSetConfig, evaluate_pairs
from polymodal.joint.train import ContrastiveOptim, ContrastiveStrategy, JointTrainConfig
from polymodal.models.config import EncoderConfig
from polymodal.training import load_config
from polymodal.training.loop import Callback, Trainer, TrainResult
from tests.cli.killing import assert_same_checkpoints


def _mod(name: str, in_dim: int, projection: str = "mlp", **kw: Any) -> JointModalityConfig:
    return JointModalityConfig(
        ModalitySpec(name, "tabular", shape=(in_dim,)),
        EncoderConfig("mlp", {"dim": 12}),  # pooled features: 12 dims
        projection=projection,
        hidden_dim=16,
        **kw,
    )


def _binding_config() -> JointConfig:
    audio = JointModalityConfig(
        ModalitySpec("audio", "tabular", shape=(4,)),
        EncoderConfig("mlp", {"dim": 12}),
        hidden_dim=16,
        input_norm=True,
    )
    image = _mod("image", 6, "residual")
    return JointConfig((image, _mod("text", 5, "linear"), audio), dim=8, anchor="image")


def _run_config(
    model: JointConfig, out: Path, others: Sequence[str] = ("text",), **optim: Any
) -> JointTrainConfig:
    """A run over in-memory pair sets named ``image-<other>`` (CPU, no early stopping)."""
    return JointTrainConfig(
        model=model,
        pairs={f"image-{o}": PairSetConfig(dataset="in-memory", other=o) for o in others},
        optim=ContrastiveOptim(**{"lr": 1e-2, "warmup_steps": 2, **optim}),
        patience=None,
        device="cpu",
        progress=False,
        output_dir=str(out),
    )


def _fit(
    cfg: JointTrainConfig,
    model: JointEmbeddingModel,
    train: dict[str, PairedFeatures],
    val: dict[str, PairedFeatures] | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
) -> TrainResult:
    strategy = ContrastiveStrategy(cfg, model, train=train, val=val)
    return Trainer(cfg, strategy, callbacks).fit(resume=resume)


def _clusters(n: int, dims: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n paired examples: both views are noisy random linear maps of one latent."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=g)
    wa, wb = torch.randn(4, dims[0], generator=g), torch.randn(4, dims[1], generator=g)
    return latent @ wa, latent @ wb


def _captioned(n: int, captions: int, seed: int) -> PairedFeatures:
    """n anchors, ``captions`` other rows each (rows k*n + i belong to anchor i)."""
    a, b = _clusters(n, (12, 12), seed)
    g = torch.Generator().manual_seed(seed + 1)
    rows = [b] + [b + 0.01 * torch.randn(b.shape, generator=g) for _ in range(captions - 1)]
    return PairedFeatures("image", "text", a, torch.cat(rows), torch.arange(n).repeat(captions))


def test_contrastive_run_reaches_perfect_retrieval(tmp_path: Path) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    model = JointEmbeddingModel(config)
    pairs = _captioned(16, 2, seed=1)  # two "captions" per image
    before = evaluate_pairs(model, [pairs])["r1_mean"]
    cfg = _run_config(config, tmp_path / "run", epochs=60, batch_size=16)
    result = _fit(cfg, model, {"image-text": pairs}, {"image-text": pairs})
    assert before < 1.0
    assert result.best_val is not None
    assert result.best_val["image2text_r@1"] == 1.0 and result.best_val["text2image_r@1"] == 1.0
    assert result.epochs_run == 60 and result.history[-1]["step"] == 60  # one batch per epoch
    assert result.test is None  # no test pair set given
    # The run folder: logs, results and both checkpoints, the best one a joint checkpoint.
    run = result.run_dir
    assert run == tmp_path / "run" and result.checkpoint == run / "checkpoints" / "best"
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "results.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last").is_dir()
    assert (result.checkpoint / JOINT_CONFIG_FILE).is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 60
    summary = json.loads((run / "results.json").read_text())
    assert set(summary) == {
        "task",
        "monitor",
        "best_epoch",
        "epochs_run",
        "seconds",
        "val",
        "test",
        "feature_seconds",
        "temperatures",
    }
    assert summary["task"] == "contrastive" and summary["monitor"] == "r1_mean"
    assert summary["val"] == result.best_val and summary["best_epoch"] == result.best_epoch
    assert set(result.info["temperatures"]) == {"image-text"}
    # The checkpoint rebuilds the same model (same fingerprint, same retrieval).
    loaded, state = load_joint_checkpoint(result.checkpoint)
    assert loaded.fingerprint() == model.fingerprint()
    assert state["val"]["r1_mean"] == result.best_val["r1_mean"]
    assert evaluate_pairs(loaded, [pairs])["r1_mean"] == result.best_val["r1_mean"]


def test_binding_two_pair_sets_share_the_anchor(tmp_path: Path) -> None:
    config = _binding_config()
    model = JointEmbeddingModel(config)
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(24, 4, generator=g)
    feats = {n: latent @ torch.randn(4, 12, generator=g) for n in ("image", "text", "audio")}
    train = {
        "image-text": PairedFeatures("image", "text", feats["image"], feats["text"]),
        "image-audio": PairedFeatures("image", "audio", feats["image"], feats["audio"]),
    }
    cfg = _run_config(
        config, tmp_path / "run", ("text", "audio"), epochs=40, batch_size=24, lr=3e-2
    )
    result = _fit(cfg, model, train, train)
    assert set(result.info["temperatures"]) == {"image-text", "image-audio"}
    assert result.best_val is not None
    assert result.best_val["image2audio_r@1"] > 0.9 and result.best_val["image2text_r@1"] > 0.9
    # Text and audio were never paired, yet they meet in the image space.
    with torch.no_grad():
        zt = model.project("text", feats["text"])
        za = model.project("audio", feats["audio"])
    hits = ((zt @ za.T).argmax(dim=1) == torch.arange(24)).float().mean()
    assert hits > 0.5  # chance: 1/24


def test_all_positives_training_reaches_perfect_retrieval(tmp_path: Path) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    model = JointEmbeddingModel(config)
    pairs = _captioned(16, 3, seed=2)
    cfg = _run_config(config, tmp_path / "run", epochs=60, batch_size=16, all_positives=True)
    result = _fit(cfg, model, {"image-text": pairs}, {"image-text": pairs})
    assert result.best_val is not None and result.best_val["r1_mean"] == 1.0
    with pytest.raises(ValueError, match=r"all_positives=true needs optim\.loss=clip"):
        ContrastiveOptim(loss="siglip", all_positives=True)


@pytest.mark.parametrize("all_positives", [False, True])
def test_max_violation_training_reaches_perfect_retrieval(
    tmp_path: Path, all_positives: bool
) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    model = JointEmbeddingModel(config)
    pairs = _captioned(16, 3, seed=2)
    before = evaluate_pairs(model, [pairs])["r1_mean"]
    cfg = _run_config(
        config,
        tmp_path / "run",
        epochs=60,
        batch_size=16,
        loss="max_violation",
        margin=0.2,
        all_positives=all_positives,
    )
    result = _fit(cfg, model, {"image-text": pairs}, {"image-text": pairs})
    assert before < 0.5
    assert result.best_val is not None and result.best_val["r1_mean"] == 1.0
    assert result.info["temperatures"] == {}  # the hinge loss has no temperature
    assert json.loads((result.run_dir / "results.json").read_text())["temperatures"] == {}


def test_the_run_seed_seeds_the_pairing() -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    pairs = {"image-text": _captioned(16, 3, seed=3)}

    def plan(seed: int) -> list[Any]:
        cfg = _run_config(config, Path("unused"), batch_size=4).replace(seed=seed)
        strategy = ContrastiveStrategy(cfg, JointEmbeddingModel(config), train=pairs)
        strategy.setup(torch.device("cpu"))
        return [(a.tolist(), o.tolist()) for step in strategy.batches(0, 0) for _, a, o in step]

    assert plan(0) == plan(0)
    assert plan(0) != plan(7)


def test_strategy_refuses_bad_pair_sets(tmp_path: Path) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    cfg = _run_config(config, tmp_path / "run")
    model = JointEmbeddingModel(config)
    bad = PairedFeatures("image", "text", torch.randn(3, 6), torch.randn(3, 12))
    with pytest.raises(ValueError, match="features of 'image' have 6 dims"):
        ContrastiveStrategy(cfg, model, train={"image-text": bad})
    good = _captioned(4, 1, seed=0)
    with pytest.raises(ValueError, match=r"pair sets \['flickr'\] are not in the config's pairs"):
        ContrastiveStrategy(cfg, model, train={"flickr": good})
    one = PairedFeatures("image", "text", torch.randn(1, 12), torch.randn(1, 12))
    with pytest.raises(ValueError, match="needs at least 2"):
        ContrastiveStrategy(cfg, model, train={"image-text": one})


# --------------------------------------------------------------------------- resume


class Killed(Exception):
    """Stands for a SIGKILL right after a checkpoint was written."""


class KillAfterFirstLast(Callback):
    def __init__(self) -> None:
        self.killed = False

    def on_checkpoint(self, trainer: Trainer, which: str, path: Path) -> None:
        if which == "last" and not self.killed:
            self.killed = True
            raise Killed(path)


def _resume_run(out: Path, model_seed: int) -> tuple[JointTrainConfig, JointEmbeddingModel]:
    # Dropout and a learnt temperature: resuming must restore the RNG and the loss state.
    config = JointConfig((_mod("image", 6, dropout=0.1), _mod("text", 5)), dim=8)
    torch.manual_seed(model_seed)
    model = JointEmbeddingModel(config)
    # 24 anchors, batches of 8: 3 steps per epoch; `last` every 2 steps (mid-epoch 1).
    cfg = _run_config(config, out, epochs=3, batch_size=8).replace(checkpoint_every_steps=2)
    return cfg, model


def _without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_killed_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    pairs = {"image-text": _captioned(24, 2, seed=4)}
    val = {"image-text": _captioned(24, 2, seed=5)}

    cfg, model = _resume_run(tmp_path / "whole", model_seed=0)
    whole = _fit(cfg, model, pairs, val)

    cfg, model = _resume_run(tmp_path / "killed", model_seed=0)
    kill = KillAfterFirstLast()
    with pytest.raises(Killed):
        _fit(cfg, model, pairs, val, [kill])
    state = json.loads((tmp_path / "killed" / "checkpoints" / "last" / "state.json").read_text())
    assert state["global_step"] == 2 and state["epoch"] == 0  # killed in the middle of epoch 1
    # A fresh process: another model (its weights come from the checkpoint), same config.
    cfg, model = _resume_run(tmp_path / "killed", model_seed=123)
    resumed = _fit(cfg, model, pairs, val, resume=True)

    assert _without_seconds(resumed.history) == _without_seconds(whole.history)
    assert resumed.epochs_run == whole.epochs_run == 3
    assert resumed.best_epoch == whole.best_epoch and resumed.best_val == whole.best_val
    assert resumed.info["temperatures"] == whole.info["temperatures"]
    assert_same_checkpoints(tmp_path / "whole", tmp_path / "killed", strategy_state=True)


def test_load_joint_checkpoint_accepts_the_run_folder(tmp_path: Path) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    model = JointEmbeddingModel(config)
    pairs = {"image-text": _captioned(8, 2, seed=6)}
    result = _fit(_run_config(config, tmp_path / "run", epochs=3, batch_size=8), model, pairs)
    from_run, run_state = load_joint_checkpoint(result.run_dir)
    from_best, best_state = load_joint_checkpoint(result.checkpoint)
    assert from_run.fingerprint() == from_best.fingerprint() == model.fingerprint()
    assert run_state == best_state
    with pytest.raises(FileNotFoundError, match=r"is neither a checkpoint folder .* nor a run"):
        load_joint_checkpoint(tmp_path)  # neither a checkpoint nor a run folder


def test_a_second_contrastive_run_keeps_the_first(tmp_path: Path) -> None:
    config = JointConfig((_mod("image", 6), _mod("text", 5)), dim=8)
    pairs = {"image-text": _captioned(8, 2, seed=6)}
    cfg = _run_config(config, tmp_path / "run", epochs=1, batch_size=8)
    first = _fit(cfg, JointEmbeddingModel(config), pairs)
    model = JointEmbeddingModel(config)
    second = _fit(cfg, model, pairs)
    assert (first.run_dir, second.run_dir) == (tmp_path / "run", tmp_path / "run-2")
    assert (first.run_dir / "results.json").is_file()
    from_latest, _ = load_joint_checkpoint(tmp_path / "run.latest")  # the newest run
    assert from_latest.fingerprint() == model.fingerprint()


# --------------------------------------------------------------------------- YAML


def _yaml(tmp_path: Path, optim: dict[str, Any]) -> Path:
    d = {
        "task": "contrastive",
        "model": {
            "dim": 8,
            "modalities": {
                "image": {"spec": {"kind": "tabular", "shape": [6]}, "encoder": {"name": "mlp"}},
                "text": {"spec": {"kind": "tabular", "shape": [5]}, "encoder": {"name": "mlp"}},
            },
        },
        "pairs": {"toy": {"dataset": "toy", "other": "text"}},
        "optim": optim,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_yaml_unknown_optim_key_lists_the_valid_ones(tmp_path: Path) -> None:
    cfg = load_config(_yaml(tmp_path, {"lr": 1e-3}))
    assert isinstance(cfg, JointTrainConfig) and cfg.optim.lr == pytest.approx(1e-3)
    with pytest.raises(ValueError) as err:
        load_config(_yaml(tmp_path, {"lr": 1e-3, "temprature": 0.1}))
    message = str(err.value)
    assert "Unknown config key 'optim.temprature'" in message
    assert f"Valid keys at 'optim': {', '.join(ContrastiveOptim.keys())}." in message
    assert "all_positives" in message and "Did you mean 'temperature'?" in message


def test_yaml_patience_under_optim_is_refused(tmp_path: Path) -> None:
    # patience moved to the top level; the old place must fail, not be ignored.
    with pytest.raises(ValueError, match=r"'optim\.patience' is no longer here: .*top-level"):
        load_config(_yaml(tmp_path, {"patience": 3}))
    assert load_config(_yaml(tmp_path, {}), ["patience=3"]).patience == 3


def test_pair_sets_of_the_same_modalities_share_one_temperature(tmp_path: Path) -> None:
    config = _binding_config()
    cfg = _run_config(config, tmp_path / "run", ("text", "audio"), epochs=2, batch_size=12)
    pairs = dict(cfg.pairs)
    pairs["more-text"] = PairSetConfig(dataset="in-memory", other="text")
    cfg = cfg.replace(pairs={k: v.to_dict() for k, v in pairs.items()})
    g = torch.Generator().manual_seed(1)
    feats = {n: torch.randn(12, 12, generator=g) for n in ("image", "text", "audio")}
    train = {
        "image-text": PairedFeatures("image", "text", feats["image"], feats["text"]),
        "more-text": PairedFeatures("image", "text", feats["image"], feats["text"].flip(0)),
        "image-audio": PairedFeatures("image", "audio", feats["image"], feats["audio"]),
    }
    strategy = ContrastiveStrategy(cfg, JointEmbeddingModel(config), train=train)
    assert sorted(strategy.losses) == ["image-audio", "image-text"]  # one per modality pair
    result = Trainer(cfg, strategy).fit()
    assert set(result.info["temperatures"]) == {"image-audio", "image-text"}
