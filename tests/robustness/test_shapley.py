"""Exact modality Shapley values: efficiency, additivity, symmetry, limits and ``explain``."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor, nn

from polymodal.cli.main import main
from polymodal.data import Batch, ModalityBatch, ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.models import ModelConfig, build_model
from polymodal.robustness import explain_dataset, shapley_values
from polymodal.robustness.shapley import shapley_weights, subset_masks

# --------------------------------------------------------------------------- helpers


def _batch(
    values: dict[str, Tensor],
    present: dict[str, Tensor] | None = None,
    target: Tensor | None = None,
) -> Batch:
    """A batch of (B, D) feature modalities; ``present`` defaults to all True."""
    b = next(iter(values.values())).shape[0]
    mods = {}
    for name, v in values.items():
        p = torch.ones(b, dtype=torch.bool) if present is None else present[name]
        mods[name] = ModalityBatch(v * p[:, None], p)
    return Batch(mods, target, [f"x{i}" for i in range(b)])


def _sums(batch: Batch, names: Sequence[str]) -> dict[str, Tensor]:
    """Per modality, (B,) sum of its values, 0 where absent."""
    return {n: batch[n].values.sum(-1) * batch[n].present for n in names}


class Additive(nn.Module):
    """Regression toy: 0.5 + sum over present modalities of ``weight * sum(values)``."""

    task = "regression"

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.names = sorted(weights)
        self.weights = weights

    def forward(self, batch: Batch) -> Tensor:
        s = _sums(batch, self.names)
        return 0.5 + sum(self.weights[n] * s[n] for n in self.names)  # (B,)


class Product(nn.Module):
    """Regression toy: sum(a) * sum(b); modality c is read by nobody."""

    task = "regression"
    names = ("a", "b", "c")

    def forward(self, batch: Batch) -> Tensor:
        s = _sums(batch, self.names)
        return s["a"] * s["b"]  # (B,)


class Symmetric(nn.Module):
    """Regression toy symmetric in a and b, with interactions: tanh(a + b) * c + a * b."""

    task = "regression"
    names = ("a", "b", "c")

    def forward(self, batch: Batch) -> Tensor:
        s = _sums(batch, self.names)
        return torch.tanh(s["a"] + s["b"]) * s["c"] + s["a"] * s["b"]


class LinearLogits(nn.Module):
    """Classification toy: logits = bias + sum over present modalities of values @ W_m."""

    task = "classification"

    def __init__(self, names: list[str], dim: int, k: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.names = names
        self.w = nn.ParameterDict(
            {n: nn.Parameter(torch.randn(dim, k, generator=g)) for n in names}
        )
        self.bias = nn.Parameter(torch.randn(k, generator=g))

    def contribution(self, batch: Batch, name: str) -> Tensor:
        mb = batch[name]
        return (mb.values @ self.w[name]) * mb.present[:, None]  # (B, K)

    def forward(self, batch: Batch) -> Tensor:
        return self.bias + sum(self.contribution(batch, n) for n in self.names)  # (B, K)


SCHEMA = Schema(
    tuple(ModalitySpec(n, ModalityKind.FEATURES, (5,)) for n in ("audio", "text", "video")),
    TargetSpec("classification", 3),
)


@pytest.fixture()
def real_model() -> nn.Module:
    cfg = ModelConfig.from_dict(
        {
            "encoders": {n: {"name": "mlp", "params": {"dim": 8}} for n in SCHEMA.names},
            "fusion": {"name": "tensor"},
        }
    )
    return build_model(cfg, SCHEMA)


def _real_batch(b: int = 6) -> Batch:
    g = torch.Generator().manual_seed(3)
    values = {n: torch.randn(b, 5, generator=g) for n in SCHEMA.names}
    present = {n: torch.ones(b, dtype=torch.bool) for n in SCHEMA.names}
    present["video"][1] = False  # missing in the data
    return _batch(values, present, torch.arange(b) % 3)


# --------------------------------------------------------------------------- (a) efficiency


@pytest.mark.parametrize("target", ["predicted", "true", "logit"])
def test_values_add_up_to_full_minus_empty_on_a_real_model(
    real_model: nn.Module, target: str
) -> None:
    batch = _real_batch()
    real_model.train()  # shapley_values evaluates in eval mode and restores the mode
    res = shapley_values(real_model, batch, target=target)
    assert real_model.training
    assert res.modalities == ["audio", "text", "video"] and res.values.shape == (6, 3)
    torch.testing.assert_close(res.values.sum(1), res.full - res.empty, atol=1e-6, rtol=0)
    assert res.values.abs().sum() > 1e-3  # the modalities do move the output
    # v(all) is the model's own output; v(none) its output with every modality absent
    real_model.eval()
    logits = real_model(batch).logits.double()
    assert torch.equal(res.predictions, logits.argmax(-1))
    index = batch.target if target == "true" else res.predictions
    scores = logits if target == "logit" else torch.softmax(logits, -1)
    torch.testing.assert_close(res.full, scores.gather(1, index[:, None])[:, 0], atol=1e-6, rtol=0)
    none = Batch(
        {n: batch[n].with_present(torch.zeros(6, dtype=torch.bool)) for n in SCHEMA.names},
        None,
        batch.ids,
    )
    empty = real_model(none).logits.double()
    empty = empty if target == "logit" else torch.softmax(empty, -1)
    torch.testing.assert_close(res.empty, empty.gather(1, index[:, None])[:, 0], atol=1e-6, rtol=0)
    # a modality an example lacks in the data contributes nothing to it
    assert float(res.values[1, 2].abs()) < 1e-12


def test_weights_match_the_average_over_orderings(real_model: nn.Module) -> None:
    res = shapley_values(real_model, _real_batch(), target="logit")
    m = len(res.modalities)
    expected = torch.zeros_like(res.values)
    for order in itertools.permutations(range(m)):
        s = 0
        for i in order:
            expected[:, i] += res.subsets[:, s | (1 << i)] - res.subsets[:, s]
            s |= 1 << i
    torch.testing.assert_close(res.values, expected / math.factorial(m), atol=1e-9, rtol=0)
    assert torch.equal(subset_masks(m)[-1], torch.ones(m, dtype=torch.bool))
    torch.testing.assert_close(shapley_weights(m).sum(0), torch.zeros(m, dtype=torch.float64))


def test_values_do_not_depend_on_batching_or_passes(real_model: nn.Module) -> None:
    batch = _real_batch()
    whole = shapley_values(real_model, batch)
    split = shapley_values(real_model, batch, max_rows=7)  # one subset per pass
    torch.testing.assert_close(split.values, whole.values, atol=1e-6, rtol=0)
    one = shapley_values(real_model, batch.index(torch.tensor([4])))
    torch.testing.assert_close(one.values[0], whole.values[4], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- (b) toy models


def test_additive_model_gets_each_contribution_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    weights = {"a": 1.0, "b": -2.0, "c": 0.5, "d": 3.0}
    values = {n: torch.randn(5, 4, generator=g) for n in weights}
    present = {n: torch.ones(5, dtype=torch.bool) for n in weights}
    present["b"][0] = False
    batch = _batch(values, present)
    res = shapley_values(Additive(weights), batch)
    s = _sums(batch, sorted(weights))
    expected = torch.stack([weights[n] * s[n] for n in res.modalities], 1).double()
    torch.testing.assert_close(res.values, expected, atol=1e-6, rtol=0)
    assert abs(float(res.values[0, 1])) < 1e-12
    torch.testing.assert_close(res.empty, torch.full((5,), 0.5, dtype=torch.float64))


def test_linear_logits_get_their_contribution_to_the_predicted_logit() -> None:
    g = torch.Generator().manual_seed(2)
    names = ["image", "text", "audio"]
    model = LinearLogits(names, 4, 3)
    batch = _batch({n: torch.randn(7, 4, generator=g) for n in names})
    res = shapley_values(model, batch, target="logit")
    idx = res.predictions[:, None]
    expected = torch.stack(
        [model.contribution(batch, n).gather(1, idx)[:, 0] for n in names], 1
    ).double()
    torch.testing.assert_close(res.values, expected, atol=1e-5, rtol=0)
    assert res.modalities == names  # the model's order


def test_an_interaction_is_split_equally_and_a_dummy_gets_zero() -> None:
    g = torch.Generator().manual_seed(4)
    batch = _batch({n: torch.randn(6, 3, generator=g) for n in "abc"})
    res = shapley_values(Product(), batch)
    s = _sums(batch, ["a", "b"])
    half = (s["a"] * s["b"] / 2).double()
    torch.testing.assert_close(res.values[:, 0], half, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.values[:, 1], half, atol=1e-6, rtol=0)
    assert float(res.values[:, 2].abs().max()) < 1e-12


# --------------------------------------------------------------------------- (c) symmetry


def test_identical_modalities_get_equal_values() -> None:
    g = torch.Generator().manual_seed(5)
    shared = torch.randn(8, 3, generator=g)
    batch = _batch({"a": shared, "b": shared.clone(), "c": torch.randn(8, 3, generator=g)})
    res = shapley_values(Symmetric(), batch)
    torch.testing.assert_close(res.values[:, 0], res.values[:, 1], atol=1e-6, rtol=0)
    assert float((res.values[:, 0] - res.values[:, 2]).abs().max()) > 1e-3
    # and swapping the two modalities' data swaps nothing else
    other = _batch({"a": shared, "b": shared * 2, "c": batch["c"].values})
    swapped = _batch({"a": shared * 2, "b": shared, "c": batch["c"].values})
    r1, r2 = shapley_values(Symmetric(), other), shapley_values(Symmetric(), swapped)
    torch.testing.assert_close(r1.values[:, [1, 0, 2]], r2.values, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- (d) refusals


def test_more_than_six_modalities_is_refused() -> None:
    names = [f"m{i}" for i in range(7)]
    batch = _batch({n: torch.ones(2, 2) for n in names})
    model = Additive(dict.fromkeys(names, 1.0))
    with pytest.raises(ValueError, match=r"M=7 modalities .* at most 6 modalities"):
        shapley_values(model, batch)
    res = shapley_values(model, batch, modalities=names[:6])  # the seventh stays present
    torch.testing.assert_close(res.values, torch.full((2, 6), 2.0, dtype=torch.float64))


def test_bad_options_name_the_fix() -> None:
    batch = _batch({n: torch.ones(2, 2) for n in "ab"})
    model = Additive({"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"Unknown target 'prob'.*predicted"):
        shapley_values(model, batch, target="prob")
    with pytest.raises(ValueError, match="Unknown modality 'x'"):
        shapley_values(model, batch, modalities=["a", "x"])
    with pytest.raises(ValueError, match="regression model does not predict"):
        shapley_values(model, batch, target="true")
    classifier = LinearLogits(["a", "b"], 2, 3)
    with pytest.raises(ValueError, match="needs the true labels"):
        shapley_values(classifier, batch, target="true")


# --------------------------------------------------------------------------- (e) explain


@pytest.fixture(scope="module")
def mosi_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A one-epoch MOSI run on text, audio and video features (~1 s)."""
    tmp = tmp_path_factory.mktemp("explain")
    cfg = {
        "data": {
            "dataset": "mosi",
            "options": {"modalities": ["text", "audio", "video"]},
            "batch_size": 64,
        },
        "model": {
            "encoders": {
                n: {"name": "mlp", "params": {"dim": 8, "num_layers": 1}}
                for n in ("text", "audio", "video")
            },
            "fusion": {"name": "early", "params": {"hidden_dim": 8}},
        },
        "optim": {"lr": 3.0e-3, "epochs": 1},
        "device": "cpu",
        "patience": None,
        "progress": False,
        "output_dir": str(tmp / "run"),
    }
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp / "tiny.yaml")]) == 0
    return tmp / "run"


def test_explain_writes_json_table_and_plot(
    mosi_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polymodal.cli.train import run_split
    from polymodal.inference import load_trained, predict

    out = tmp_path / "out"
    assert main(["explain", str(mosi_run), "--split", "val", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| video |" in printed and "shapley.png" in printed
    result = json.loads((out / "shapley.json").read_text())
    trained = load_trained(mosi_run)
    dataset = run_split(trained, "val")
    n = len(dataset)
    assert (result["split"], result["target"], result["examples"]) == ("val", "predicted", n)
    assert list(result["modalities"]) == ["audio", "text", "video"]
    records = result["records"]
    assert [r["id"] for r in records] == [dataset[i].id for i in range(n)]
    phi = torch.tensor(
        [[r["phi"][m] for m in ("audio", "text", "video")] for r in records], dtype=torch.float64
    )
    full = torch.tensor([r["full"] for r in records], dtype=torch.float64)
    empty = torch.tensor([r["empty"] for r in records], dtype=torch.float64)
    torch.testing.assert_close(phi.sum(1), full - empty, atol=1e-6, rtol=0)
    assert result["efficiency_error"] < 1e-9
    # v(all) is the probability that predict gives the predicted class
    probs = torch.softmax(predict(trained.model, dataset, batch_size=256).outputs.double(), -1)
    torch.testing.assert_close(full, probs.max(1).values, atol=1e-5, rtol=0)
    names = trained.schema.target.class_names
    assert [r["prediction"] for r in records] == [names[i] for i in probs.argmax(1).tolist()]
    assert {r["label"] for r in records} <= set(names)
    summary = result["modalities"]
    for j, m in enumerate(("audio", "text", "video")):
        assert summary[m]["mean_abs_phi"] == pytest.approx(float(phi[:, j].abs().mean()))
        assert summary[m]["mean_phi"] == pytest.approx(float(phi[:, j].mean()))
    assert sum(s["share"] for s in summary.values()) == pytest.approx(1.0)
    assert result["full_mean"] == pytest.approx(float(full.mean()))
    assert float(phi.abs().mean()) > 1e-3
    assert "| audio |" in (out / "shapley.md").read_text()
    assert (out / "shapley.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the library gives the same numbers
    report = explain_dataset(trained.model, dataset, 32, modalities=["audio", "text", "video"])
    torch.testing.assert_close(report.values, phi, atol=1e-6, rtol=0)


def test_explain_true_target_and_bad_options(
    mosi_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "true"
    args = ["explain", str(mosi_run), "--split", "val", "--target", "true", "-o", str(out)]
    assert main([*args, "--modalities", "text", "video", "--batch-size", "100"]) == 0
    result = json.loads((out / "shapley.json").read_text())
    assert result["target"] == "true" and list(result["modalities"]) == ["text", "video"]
    capsys.readouterr()
    assert main([*args, "--modalities", "txt"]) == 2
    err = capsys.readouterr().err
    assert "--modalities names 'txt'" in err and "Did you mean 'text'?" in err
    assert main([*args, "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "nope")]) == 2
    assert "neither a checkpoint folder" in capsys.readouterr().err
