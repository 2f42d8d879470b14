from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from polymodal.data import MultimodalDataset, Sample, Schema
from polymodal.data.modality import ModalitySpec, TargetSpec
from polymodal.data.sample import Batch
from polymodal.inference import evaluate
from polymodal.losses import task_loss
from polymodal.models import ModelConfig, ModelOutput
from polymodal.training import (
    DataConfig,
    SupervisedOptim,
    TrainConfig,
    Trainer,
    TrainResult,
    load_config,
)
from polymodal.training.data import EpochSampler
from polymodal.training.loop import param_groups
from polymodal.training.schedule import WarmupCosine, build_scheduler
from polymodal.training.supervised import SupervisedStrategy

SCHEMA = Schema(
    (ModalitySpec("a", "features", shape=(4,)), ModalitySpec("b", "features", shape=(3,))),
    TargetSpec("classification", 2, ("neg", "pos")),
)
MODEL_CFG = ModelConfig.from_dict({"encoders": {"a": {"name": "mlp"}, "b": {"name": "mlp"}}})


class Toy(MultimodalDataset):
    """Two feature modalities; the label is the sign of a[0] + b[0]; 10 groups."""

    name = "toy"

    def __init__(self, n: int, seed: int, split: str = "train") -> None:
        g = torch.Generator().manual_seed(seed)
        self.schema = SCHEMA
        self.split = split
        self.a = torch.randn(n, 4, generator=g)
        self.b = torch.randn(n, 3, generator=g)
        self.y = ((self.a[:, 0] + self.b[:, 0]) > 0).long()
        self.reads = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Sample:
        self.reads += 1
        return Sample(f"{self.split}{i}", {"a": self.a[i], "b": self.b[i]}, int(self.y[i]))

    def targets(self) -> list[Any]:
        return self.y.tolist()

    def groups(self) -> list[str]:
        return [f"g{i % 10}" for i in range(len(self))]


class TinyModel(nn.Module):
    """Concatenate both modalities -> MLP with dropout; optional per-modality heads."""

    task = "classification"
    num_outputs = 2

    def __init__(self, fail_at_call: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same initial weights every time
        self.net = nn.Sequential(nn.Linear(7, 16), nn.LayerNorm(16), nn.GELU(), nn.Dropout(0.1))
        self.out = nn.Linear(16, 2)
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(3, 2)})
        self.generator = torch.Generator().manual_seed(0)  # like MultimodalModel's
        self.calls = 0
        self.fail_at_call = fail_at_call

    def forward(self, batch: Batch) -> ModelOutput:
        self.calls += 1
        if self.fail_at_call is not None and self.calls == self.fail_at_call:
            raise KeyboardInterrupt("simulated crash")
        a, b = batch["a"].values, batch["b"].values
        assert isinstance(a, Tensor) and isinstance(b, Tensor)
        if self.training:  # draws from its own generator, as modality dropout does
            a = a * (torch.rand(a.shape[0], 1, generator=self.generator) > 0.05).to(a)
        h = self.net(torch.cat([a, b], -1))  # (B, 16)
        mod = {"a": self.heads["a"](a), "b": self.heads["b"](b)}
        return ModelOutput(self.out(h), h, mod, None)


def _cfg(tmp_path: Path, **kw: Any) -> TrainConfig:
    optim = SupervisedOptim(**kw.pop("optim", {"lr": 3e-2, "epochs": 4, "warmup_ratio": 0.1}))
    data = DataConfig(dataset="toy", batch_size=kw.pop("batch_size", 16))
    return TrainConfig(
        data=data,
        model=MODEL_CFG,
        optim=optim,
        output_dir=str(tmp_path / "run"),
        device="cpu",
        progress=False,
        **kw,
    )


def _fit(
    cfg: TrainConfig,
    model: nn.Module,
    train: MultimodalDataset,
    val: MultimodalDataset,
    test: MultimodalDataset | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """The supervised strategy on the one loop."""
    strategy = SupervisedStrategy(cfg, model, train, val, test)
    return Trainer(cfg, strategy).fit(resume=resume, overwrite=overwrite)


def _data() -> tuple[Toy, Toy, Toy]:
    return Toy(96, 0), Toy(48, 1, "val"), Toy(48, 2, "test")


def _weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ schedule, losses


def test_warmup_cosine_values() -> None:
    f = WarmupCosine(total_steps=10, warmup_steps=2)
    assert [f(s) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert f(6) == pytest.approx(0.5)  # half way through the cosine
    assert f(10) == pytest.approx(0.0)
    assert WarmupCosine(10, 0, min_ratio=0.1)(10) == pytest.approx(0.1)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_scheduler(opt, total_steps=4, warmup_ratio=0.25)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.0, 2.0, 1.5, 0.5])  # 1 warmup step, then cos over 3
    with pytest.raises(ValueError, match="warmup_ratio must be in"):
        build_scheduler(opt, 4, warmup_ratio=1.5)


def test_task_losses_match_torch() -> None:
    logits, y = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])
    ce = nn.functional.cross_entropy(logits, y)
    assert torch.allclose(task_loss("classification", logits, y), ce)
    pred, target = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])
    assert task_loss("regression", pred, target).item() == pytest.approx(1.0)
    assert task_loss("regression", pred[:, None], target, "l1").item() == pytest.approx(1.0)
    ml = task_loss("multilabel", torch.zeros(2, 3), torch.ones(2, 3))
    assert ml.item() == pytest.approx(math.log(2))


def test_no_weight_decay_on_biases_and_norms() -> None:
    groups = param_groups(TinyModel(), 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    model = TinyModel()
    groups = param_groups(model, 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert names == {"net.0.weight", "out.weight", "heads.a.weight", "heads.b.weight"}
    assert groups[1]["weight_decay"] == 0.0


def test_epoch_sampler_seeded_and_skips() -> None:
    full = list(EpochSampler(10, seed=3, epoch=1))
    assert sorted(full) == list(range(10))
    assert list(EpochSampler(10, seed=3, epoch=1, start=4)) == full[4:]
    assert list(EpochSampler(10, seed=3, epoch=2)) != full


# ------------------------------------------------------------------ config


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


BASE_YAML = """
data: {dataset: mosi, options: {modalities: [text, audio]}}
model:
  encoders: {text: {name: mlp}, audio: {name: mlp}}
  fusion: {name: early}
optim: {lr: 1.0e-3, epochs: 2}
"""


def test_load_config_with_overrides(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path, BASE_YAML),
        [
            "optim.lr=3e-4",
            "model.fusion.name=late",
            "data.options.modalities=[text,audio,video]",
            "data.val_split=null",
            "patience=2",
            "optim.betas=[0.8,0.9]",
        ],
    )
    assert cfg.name == "exp" and cfg.run_dir == Path("runs/exp")
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.epochs == 2
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.model.fusion.name == "late"
    assert cfg.data.options == {"modalities": ["text", "audio", "video"]}
    assert cfg.patience == 2 and cfg.data.val_split is None
    assert TrainConfig.from_yaml(cfg.to_yaml()) == cfg


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            "optim.lrr=1",
            r"Unknown config key 'optim.lrr'. Valid keys at 'optim': lr, .*Did you mean 'lr'\?",
        ),
        ("pateince=3", r"Unknown config key 'pateince'.*Did you mean 'patience'\?"),
        ("optim.lr=fast", r"Config key 'optim.lr' must be float, got str 'fast'"),
        ("optim.epochs=2.5", r"'optim.epochs' must be int, got float 2.5"),
        ("progress=maybe", r"'progress' must be bool, got str 'maybe'"),
        ("precision=bf61", r"'precision' must be one of \['fp32', 'bf16'\].*Did you mean 'bf16'"),
        ("optim.lr", r"must look like key=value"),
        ("optim.lr.x=1", r"'optim.lr' is a value"),
        ("model.fusoin.name=late", r"Unknown config key 'model.fusoin'.*Did you mean 'fusion'"),
        ("data.manifest=x.csv", r"exactly one of 'data.dataset'.*'data.manifest'"),
        ("optim.lr=-1", r"Config key 'optim.lr' must be > 0, got -1"),
        ("optim.lr=.nan", r"Config key 'optim.lr' must be a finite number, got nan"),
        ("optim.grad_clip=.inf", r"'optim.grad_clip' must be a finite number, got inf"),
        ("model.head.dropout=1.5", r"'model.head.dropout' must be >= 0 and < 1, got 1.5"),
        ("data.val_split=test", r"data.val_split and data.test_split are both 'test'"),
        ("task=contrasive", r"Unknown training task 'contrasive'.*Did you mean 'contrastive'"),
        ("device=gpu", r"device must be 'auto', 'cpu', 'cuda'"),
    ],
)
def test_config_errors(tmp_path: Path, override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_config(_write(tmp_path, BASE_YAML), [override])


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ValueError, match=r"missing the required key\(s\) 'model'"):
        load_config(_write(tmp_path, "data: {dataset: mosi}\n"))
    with pytest.raises(ValueError, match=r"Config file '.*exp\.yaml' must be a mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))


# ------------------------------------------------------------------ trainer


def test_trainer_learns_and_logs(tmp_path: Path) -> None:
    train, val, test = _data()
    cfg = _cfg(tmp_path, monitor="accuracy", patience=None)
    model = TinyModel()
    result = _fit(cfg, model, train, val, test)
    h = result.history
    assert result.epochs_run == 4 and len(h) == 4
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert result.best_val["accuracy"] > 0.75  # chance is about 0.5
    assert result.test is not None and result.test["accuracy"] > 0.75
    assert set(result.test) == {"accuracy", "macro_f1", "weighted_f1", "auroc", "loss"}
    assert result.best_val["accuracy"] == max(r["val_accuracy"] for r in h)
    run = tmp_path / "run"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["epoch", "step", "lr", "train_loss"] and "val_accuracy" in header
    assert json.loads((run / "results.json").read_text())["test"] == result.test
    for sub in ("last", "best"):
        assert (run / "checkpoints" / sub / "model.safetensors").is_file()
        assert (run / "checkpoints" / sub / "config.yaml").is_file()
    # evaluate() agrees with what fit reported for the best weights on the test split
    again = evaluate(model, test, "classification", "cpu", 16)
    assert again == pytest.approx(result.test)


def test_test_split_read_once_at_the_end(tmp_path: Path) -> None:
    train, val, test = _data()
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 3}, patience=None)
    _fit(cfg, TinyModel(), train, val, test)
    assert test.reads == len(test)  # one evaluation; never looked at during selection
    assert val.reads == 3 * len(val)


def test_early_stopping_stops(tmp_path: Path) -> None:
    train, val, _ = _data()
    # A learning rate too small to change any prediction: no epoch beats the first.
    cfg = _cfg(tmp_path, optim={"lr": 1e-9, "epochs": 10}, patience=2)
    result = _fit(cfg, TinyModel(), train, val)
    assert result.epochs_run == 3 and result.best_epoch == 1
    assert result.test is None


def test_resume_after_crash_gives_identical_weights(tmp_path: Path) -> None:
    train, val, test = _data()
    kw: dict[str, Any] = {"optim": {"lr": 1e-2, "epochs": 3, "aux_loss_weight": 0.3}}
    kw["checkpoint_every_steps"] = 4
    whole = TinyModel()
    ref = _fit(_cfg(tmp_path / "a", **kw), whole, train, val, test)

    cfg = _cfg(tmp_path / "b", **kw)
    # 6 steps + 3 validation calls per epoch: call 12 is step 9, after the step-8 checkpoint
    crashing = TinyModel(fail_at_call=12)
    with pytest.raises(KeyboardInterrupt):
        _fit(cfg, crashing, train, val, test)
    state = json.loads((tmp_path / "b/run/checkpoints/last/state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    resumed = TinyModel()
    res = _fit(cfg, resumed, train, val, test, resume=True)

    for k, v in _weights(whole).items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert res.history == [
        {**r, "seconds": s["seconds"]} for r, s in zip(ref.history, res.history, strict=True)
    ]
    assert res.test == ref.test and res.best_val == ref.best_val


def test_resume_needs_checkpoint_and_same_config(tmp_path: Path) -> None:
    train, val, _ = _data()
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 1})
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        _fit(cfg, TinyModel(), train, val, resume=True)
    _fit(cfg, TinyModel(), train, val)
    changed = cfg.replace(**{"optim.lr": 5e-3})
    with pytest.raises(ValueError, match=r"config differs .* in \['optim'\]"):
        _fit(changed, TinyModel(), train, val, resume=True)


def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    train, val, _ = _data()
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 1}, precision="bf16")
    result = _fit(cfg, TinyModel(), train, val)
    assert math.isfinite(result.history[0]["train_loss"])


def test_monitor_must_fit_the_task(tmp_path: Path) -> None:
    train, val, _ = _data()
    with pytest.raises(ValueError, match=r"monitor='mae' is not computed for a classification"):
        SupervisedStrategy(_cfg(tmp_path, monitor="mae"), TinyModel(), train, val)


def test_overwrite_replaces_an_earlier_run(tmp_path: Path) -> None:
    train, val, _ = _data()
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 2}, patience=None)
    _fit(cfg, TinyModel(), train, val)
    marker = tmp_path / "run" / "checkpoints" / "best" / "stale"
    marker.write_text("from the earlier run")
    again = _fit(cfg.replace(**{"optim.epochs": 1}), TinyModel(), train, val, overwrite=True)
    assert again.run_dir == tmp_path / "run"
    assert again.epochs_run == 1 and not marker.exists()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "run-2").exists()
    assert (tmp_path / "run.latest").read_text() == "run\n"


def test_a_new_run_never_overwrites_an_earlier_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train, val, _ = _data()
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 2}, patience=None)
    first = _fit(cfg, TinyModel(), train, val)
    assert first.run_dir == tmp_path / "run"
    assert (tmp_path / "run.latest").read_text() == "run\n"
    results = (tmp_path / "run" / "results.json").read_text()
    best = (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").read_bytes()

    for k in (2, 3):
        with caplog.at_level("WARNING", logger="polymodal.training"):
            again = _fit(cfg.replace(**{"optim.epochs": 1}), TinyModel(), train, val)
        assert again.run_dir == tmp_path / f"run-{k}" and again.epochs_run == 1
        assert f"run already holds a run, which is kept; this run goes to {again.run_dir}" in (
            caplog.text
        )
        assert (tmp_path / "run.latest").read_text() == f"run-{k}\n"
        assert again.checkpoint.is_dir()
        saved = TrainConfig.from_yaml(again.run_dir / "config.yaml")
        assert saved.run_dir == again.run_dir  # config.yaml names the folder it is in
    # the first run is untouched
    assert (tmp_path / "run" / "results.json").read_text() == results
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").read_bytes() == best
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    # no lock is left behind
    assert not list(tmp_path.glob("run*/train.lock"))


class RegToy(Toy):
    """The same inputs; the target is a[0] + b[0] as a value."""

    def __init__(self, n: int, seed: int, split: str = "train") -> None:
        super().__init__(n, seed, split)
        self.schema = Schema(SCHEMA.modalities, TargetSpec("regression", 1))
        self.value = self.a[:, 0] + self.b[:, 0]

    def __getitem__(self, i: int) -> Sample:
        s = super().__getitem__(i)
        s.target = float(self.value[i])
        return s


class TinyRegressor(TinyModel):
    task = "regression"
    num_outputs = 1

    def forward(self, batch: Batch) -> ModelOutput:
        out = super().forward(batch)
        return ModelOutput(out.logits[:, 0], out.features)  # (B,), as MultimodalModel squeezes


def test_regression_task_monitors_mae(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 3, "regression_loss": "l1"}, monitor="mae")
    res = _fit(cfg, TinyRegressor(), RegToy(96, 0), RegToy(48, 1), RegToy(48, 2))
    assert res.test is not None and set(res.test) == {"mae", "pearson_r", "loss"}
    assert res.test["loss"] == pytest.approx(res.test["mae"], rel=1e-5)  # L1 loss is the MAE
    assert res.best_val["pearson_r"] > 0.5
    assert res.best_val["mae"] == min(r["val_mae"] for r in res.history)


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_every_shipped_config_is_tested() -> None:
    assert {p.stem for p in CONFIGS} >= {"mosi", "av_digits", "har_phone_watch", "flickr8k"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load_and_name_registered_components(path: Path) -> None:
    from polymodal.encoders.base import ENCODERS
    from polymodal.fusion.base import FUSIONS
    from polymodal.models.build import register_components

    cfg = load_config(path)
    assert cfg.name == path.stem
    assert type(cfg).from_yaml(cfg.to_yaml()) == cfg  # the YAML form round-trips
    register_components()
    model = cfg.model  # type: ignore[attr-defined]
    if cfg.task == "contrastive":
        encoders = [m.encoder for m in model.modalities]
    elif cfg.task == "captioning":
        encoders = [cfg.encoder]  # type: ignore[attr-defined]  # the decoder is not registered
    else:
        encoders = list(model.encoders.values())
        assert model.fusion.name in FUSIONS
    for enc in encoders:
        assert enc.name in ENCODERS


class _Scripted(SupervisedStrategy):
    """The supervised strategy with scripted validation metrics, one dict per epoch."""

    def __init__(self, cfg: TrainConfig, script: list[dict[str, float]]) -> None:
        train, val, _ = _data()
        super().__init__(cfg, TinyModel(), train, val, None)
        self.script = list(script)

    def evaluate(self, split: str) -> dict[str, float] | None:
        return self.script.pop(0) if split == "val" else None


def test_a_tie_of_the_monitor_goes_to_the_lower_validation_loss(tmp_path: Path) -> None:
    script = [
        {"accuracy": 1.0, "loss": 0.5},  # a tiny validation set saturates at epoch 1
        {"accuracy": 1.0, "loss": 0.3},  # tie, lower loss: better
        {"accuracy": 1.0, "loss": 0.29999999},  # tie, loss lower only by noise: not better
        {"accuracy": 0.9, "loss": 0.1},  # lower accuracy: not better, whatever the loss
    ]
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 10}, patience=2)
    result = Trainer(cfg, _Scripted(cfg, script)).fit()
    assert result.best_epoch == 2 and result.epochs_run == 4
    assert result.best_val == {"accuracy": 1.0, "loss": 0.3}


def test_min_epochs_holds_off_early_stopping(tmp_path: Path) -> None:
    script = [{"accuracy": 0.8, "loss": 0.5}] + [{"accuracy": 0.5, "loss": 0.9}] * 9
    cfg = _cfg(tmp_path, optim={"lr": 1e-2, "epochs": 10}, patience=1, min_epochs=4)
    result = Trainer(cfg, _Scripted(cfg, script)).fit()
    assert result.best_epoch == 1 and result.epochs_run == 4
    cfg = _cfg(tmp_path / "b", optim={"lr": 1e-2, "epochs": 10}, patience=1)
    assert Trainer(cfg, _Scripted(cfg, script)).fit().epochs_run == 2


def test_an_unknown_monitor_fails_when_the_config_is_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown monitor 'acuracy'.*Did you mean 'accuracy'"):
        _cfg(tmp_path, monitor="acuracy")


def test_selection_rules() -> None:
    from polymodal.training.selection import improves

    assert improves(0.9, 0.5, 0.8, 0.1, higher=True)  # a better monitor wins, whatever the loss
    assert not improves(0.7, 0.01, 0.8, 0.5, higher=True)
    assert improves(0.8, 0.4, 0.8, 0.5, higher=True)  # a tie: the lower loss wins
    assert not improves(0.8, 0.49999, 0.8, 0.5, higher=True)  # ... by more than noise
    assert not improves(float("nan"), 0.1, None, None, higher=True)
    assert improves(0.3, None, None, None, higher=False) and not improves(
        0.3, None, 0.3, 0.2, False
    )
