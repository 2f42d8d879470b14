"""Decision-level fusions (``late``, ``hybrid``; :mod:`polymodal.models.decision`).

They predict the K logits themselves (no head reads their output), so they live with the
models.  First golden-value tests of each strategy by hand, then the contract every
registered ``kind="decision"`` fusion keeps (the decision-level counterpart of
``tests/contract/test_fusion_contract.py``, whose input helper it reuses), and how
``build_model`` wires them.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest
import torch
from torch import Tensor

from polymodal.data import ModalityKind, ModalitySpec, Sample, Schema, TargetSpec, collate
from polymodal.fusion import FUSIONS
from polymodal.models import (
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    ModelConfig,
    ModelOutput,
    build_model,
)
from polymodal.models.build import is_decision_level
from polymodal.models.decision import DecisionFusion, HybridFusion, LateFusion
from polymodal.outputs import DecisionOutput, EncoderOutput
from tests.contract.test_fusion_contract import PATTERNS
from tests.contract.test_fusion_contract import make_inputs as contract_inputs

IN_DIMS = {"video": 6, "audio": 4, "text": 5}  # insertion order differs from sorted order
NAMES = sorted(IN_DIMS)  # ["audio", "text", "video"]
K = 3

# Rows: all present / audio absent / only text / nothing.
PRESENT = {
    "audio": torch.tensor([True, False, False, False]),
    "text": torch.tensor([True, True, True, False]),
    "video": torch.tensor([True, True, False, False]),
}


def make_inputs(
    b: int = 4, seed: int = 0, dims: dict[str, int] | None = None
) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, d in (dims or IN_DIMS).items():
        seq = torch.randn(b, 2, d, generator=g)  # (B, L, D)
        mask = torch.ones(b, 2, dtype=torch.bool)
        out[name] = EncoderOutput(seq, mask, seq.mean(1))
    return out


def with_pooled(inputs: dict[str, EncoderOutput], name: str, pooled: Tensor) -> dict:
    new = dict(inputs)
    old = inputs[name]
    new[name] = EncoderOutput(old.sequence, old.mask, pooled)
    return new


def build(name: str, dims: dict[str, int] | None = None, /, **hyper: object) -> Any:
    """Build by name from the registry, as build_model does, in eval mode."""
    return FUSIONS.build(name, in_dims=dict(dims or IN_DIMS), num_outputs=K, **hyper).eval()


def head_logits(fusion: LateFusion, inputs: dict[str, EncoderOutput]) -> dict[str, Tensor]:
    return {n: fusion.heads[n](inputs[n].pooled) for n in fusion.names}


# --------------------------------------------------------------------------- late fusion


def test_late_mean_equals_mean_of_present_modalities_by_hand() -> None:
    fusion = build("late", combine="mean")
    inputs = make_inputs()
    out = fusion(inputs, PRESENT)
    raw = head_logits(fusion, inputs)
    expected = torch.stack(
        [
            (raw["audio"][0] + raw["text"][0] + raw["video"][0]) / 3,
            (raw["text"][1] + raw["video"][1]) / 2,
            raw["text"][2],
            torch.zeros(K),
        ]
    )
    assert isinstance(out, DecisionOutput)
    torch.testing.assert_close(out.logits, expected)
    assert out.logits.shape == (4, K)
    assert isinstance(fusion, LateFusion) and fusion.num_outputs == fusion.out_dim == K
    w = torch.tensor([[1 / 3] * 3, [0, 0.5, 0.5], [0, 1, 0], [0, 0, 0]])
    torch.testing.assert_close(out.weights, w)
    # modality logits are each head's output where present, zero where absent
    assert out.modality_logits is not None
    for n in NAMES:
        p = PRESENT[n]
        torch.testing.assert_close(out.modality_logits[n][p], raw[n][p])
        assert (out.modality_logits[n][~p] == 0).all()


def _without(fusion: LateFusion, drop: str) -> LateFusion:
    """The same late fusion built without modality ``drop``, sharing its parameters."""
    dims = {n: d for n, d in IN_DIMS.items() if n != drop}
    sub = LateFusion(dims, K, combine=fusion.combine).eval()
    for n in sub.names:
        sub.heads[n].load_state_dict(fusion.heads[n].state_dict())
    if fusion.modality_scores is not None and sub.modality_scores is not None:
        keep = [fusion.names.index(n) for n in sub.names]
        sub.modality_scores.data.copy_(fusion.modality_scores.data[keep])
    return sub


@pytest.mark.parametrize("combine", ["mean", "mean_probs", "learned"])
@pytest.mark.parametrize("drop", NAMES)
def test_late_absent_modality_equals_fusion_without_it(combine: str, drop: str) -> None:
    fusion = LateFusion(IN_DIMS, K, combine=combine).eval()
    if fusion.modality_scores is not None:
        fusion.modality_scores.data.copy_(torch.tensor([0.7, -1.2, 0.3]))
    inputs = make_inputs(b=3, seed=1)
    present = {n: torch.ones(3, dtype=torch.bool) for n in NAMES}
    present[drop] = torch.tensor([False, True, False])
    full = fusion(inputs, present).logits
    sub = _without(fusion, drop)
    sub_inputs = {n: v for n, v in inputs.items() if n != drop}
    sub_present = {n: torch.ones(3, dtype=torch.bool) for n in sub.names}
    reduced = sub(sub_inputs, sub_present).logits
    rows = ~present[drop]
    torch.testing.assert_close(full[rows], reduced[rows])
    assert not torch.allclose(full[1], reduced[1])  # where it is present, it counts


def test_late_learned_weights_renormalise_over_present_modalities() -> None:
    fusion = LateFusion(IN_DIMS, K, combine="learned").eval()
    scores = torch.tensor([1.0, 0.0, -1.0])  # audio, text, video
    assert fusion.modality_scores is not None
    fusion.modality_scores.data.copy_(scores)
    inputs = make_inputs()
    out = fusion(inputs, PRESENT)
    prior = torch.softmax(scores, 0)
    assert out.weights is not None
    torch.testing.assert_close(out.weights[0], prior)
    tv = prior[1:] / prior[1:].sum()
    torch.testing.assert_close(out.weights[1], torch.cat([torch.zeros(1), tv]))
    torch.testing.assert_close(out.weights[2], torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(out.weights[3], torch.zeros(3))
    raw = head_logits(fusion, inputs)
    torch.testing.assert_close(out.logits[1], tv[0] * raw["text"][1] + tv[1] * raw["video"][1])
    # the scores learn from examples with more than one modality
    out.logits[:2].sum().backward()
    assert fusion.modality_scores.grad is not None
    assert fusion.modality_scores.grad.abs().sum() > 0


def test_late_learned_starts_as_mean() -> None:
    torch.manual_seed(3)
    learned = LateFusion(IN_DIMS, K, combine="learned")
    torch.manual_seed(3)
    mean = LateFusion(IN_DIMS, K, combine="mean")
    inputs = make_inputs()
    torch.testing.assert_close(learned(inputs, PRESENT).logits, mean(inputs, PRESENT).logits)


def test_late_stacking_is_a_linear_layer_over_logits_and_flags() -> None:
    fusion = LateFusion(IN_DIMS, K, combine="stacking").eval()
    inputs = make_inputs()
    # freshly built, stacking is the plain mean when every modality is present
    mean_fused = LateFusion(IN_DIMS, K, combine="mean").eval()
    mean_fused.heads.load_state_dict(fusion.heads.state_dict())
    torch.testing.assert_close(
        fusion(inputs, PRESENT).logits[0], mean_fused(inputs, PRESENT).logits[0]
    )
    assert fusion.stack is not None
    with torch.no_grad():
        fusion.stack.weight.normal_(generator=torch.Generator().manual_seed(5))
        fusion.stack.bias.normal_(generator=torch.Generator().manual_seed(6))
    out = fusion(inputs, PRESENT)
    raw = head_logits(fusion, inputs)
    flags = torch.stack([PRESENT[n] for n in NAMES], 1).float()  # (B, M)
    z = torch.cat([raw[n] * flags[:, i : i + 1] for i, n in enumerate(NAMES)] + [flags], 1)
    expected = z @ fusion.stack.weight.T + fusion.stack.bias
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(out.logits[3], fusion.stack.bias)  # nothing present: the prior
    assert out.weights is not None and not out.weights.requires_grad
    torch.testing.assert_close(out.weights.sum(1), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert (out.weights[~flags.bool()] == 0).all()


@pytest.mark.parametrize("combine", ["mean", "mean_probs", "learned"])
def test_late_all_missing_gives_zeros(combine: str) -> None:
    fusion = LateFusion(IN_DIMS, K, combine=combine)
    present = {n: torch.zeros(2, dtype=torch.bool) for n in NAMES}
    out = fusion(make_inputs(b=2), present)
    assert torch.equal(out.logits, torch.zeros(2, K))
    out.logits.sum().backward()  # and the backward stays finite
    for p in fusion.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_late_mean_probs_averages_the_present_modalities_probabilities_by_hand() -> None:
    fusion = build("late", combine="mean_probs")
    inputs = make_inputs()
    out = fusion(inputs, PRESENT)
    p = {n: torch.softmax(v, dim=-1) for n, v in head_logits(fusion, inputs).items()}
    expected = torch.stack(
        [
            (p["audio"][0] + p["text"][0] + p["video"][0]) / 3,
            (p["text"][1] + p["video"][1]) / 2,
            p["text"][2],
        ]
    )
    torch.testing.assert_close(out.logits[:3].exp(), expected)  # logits = log mean probs
    torch.testing.assert_close(out.logits[3], torch.zeros(K))  # nothing present: uniform
    out.logits.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in fusion.parameters())


def test_late_mean_probs_is_not_outvoted_by_one_confidently_wrong_modality() -> None:
    # image says class 2 (p 0.96); audio says 6 (p 0.72), with 3 second (p 0.27).  Mean
    # logits multiply the probabilities and pick class 3, which neither modality chose;
    # mean probabilities keep the image's class 2.
    image = torch.tensor([[0.0, 0.0, 6.0, 2.0, 0.0, 0.0, 0.0, 0.0]])
    audio = torch.tensor([[0.0, 0.0, -4.0, 5.0, 0.0, 0.0, 6.0, 0.0]])
    dims = {"audio": 8, "image": 8}
    inputs = {
        "audio": EncoderOutput(audio[:, None], torch.ones(1, 1, dtype=torch.bool), audio),
        "image": EncoderOutput(image[:, None], torch.ones(1, 1, dtype=torch.bool), image),
    }
    present = {n: torch.ones(1, dtype=torch.bool) for n in dims}
    picks = {}
    for combine in ("mean", "mean_probs"):
        fusion = LateFusion(dims, 8, combine=combine).eval()
        for head in fusion.heads.values():  # identity heads: the inputs are the logits
            linear = head[1].net[0]  # Dropout, then MLP(Linear) with hidden_dim 0
            torch.nn.init.eye_(linear.weight)
            torch.nn.init.zeros_(linear.bias)
        picks[combine] = int(fusion(inputs, present).logits.argmax())
    assert picks == {"mean": 3, "mean_probs": 2}


def test_late_mean_probs_needs_a_classification_target() -> None:
    cfg = model_config("late")
    cfg = ModelConfig(cfg.encoders, FusionConfig("late", {"combine": "mean_probs"}))
    with pytest.raises(ValueError, match=r"combine 'mean_probs'.*target is 'regression'"):
        build_model(cfg, model_schema("regression"))
    assert build_model(cfg, model_schema("classification")).fusion.combine == "mean_probs"


def test_late_unknown_combine_suggests() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown late-fusion combine 'meen'.*Did you mean 'mean'"
    ):
        build("late", combine="meen")


def test_late_head_hidden_dim_builds_mlp_heads() -> None:
    fusion = build("late", hidden_dim=7, dropout=0.1)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in fusion.heads["audio"].modules())
    assert n_linear == 2
    assert fusion(make_inputs(), PRESENT).logits.shape == (4, K)


@pytest.mark.parametrize("name", ["late", "hybrid"])
def test_forward_input_errors(name: str) -> None:
    fusion = build(name)
    inputs = make_inputs()
    no_text = {n: v for n, v in inputs.items() if n != "text"}
    with pytest.raises(ValueError, match=r"'inputs' argument lacks \['text'\]"):
        fusion(no_text, PRESENT)
    with pytest.raises(
        ValueError, match=r"'present' argument lacks \[\] and has unexpected \['x'\]"
    ):
        fusion(inputs, {**PRESENT, "x": PRESENT["text"]})
    with pytest.raises(
        ValueError, match=r"modality 'audio' pooled output must have shape \(B, 4\)"
    ):
        fusion(with_pooled(inputs, "audio", torch.zeros(4, 5)), PRESENT)
    with pytest.raises(ValueError, match=r"present\['text'\] must be a \(4,\) bool tensor"):
        fusion(inputs, {**PRESENT, "text": PRESENT["text"].float()})
    with pytest.raises(ValueError, match=r"modality 'video' has batch size 3, but 'audio' has 4"):
        fusion(with_pooled(inputs, "video", torch.zeros(3, 6)), PRESENT)


# --------------------------------------------------------------------------- hybrid


def test_hybrid_mixes_joint_and_modality_heads_by_hand() -> None:
    fusion = build("hybrid", hidden_dim=8)
    assert isinstance(fusion, HybridFusion) and fusion.num_outputs == fusion.out_dim == K
    with torch.no_grad():
        fusion.modality_scores.copy_(torch.tensor([0.5, -1.0, 0.25]))
        fusion.mix.fill_(0.4)
    inputs = make_inputs()
    out = fusion(inputs, PRESENT)
    flags = torch.stack([PRESENT[n] for n in NAMES], 1).float()  # (B, M)
    xs = [inputs[n].pooled * flags[:, i : i + 1] for i, n in enumerate(NAMES)]
    joint = fusion.joint(torch.cat([*xs, flags], 1))  # (B, K)
    raw = {n: fusion.heads[n](inputs[n].pooled) for n in NAMES}
    prior = torch.softmax(torch.tensor([0.5, -1.0, 0.25]), 0)
    lam = torch.sigmoid(torch.tensor(0.4))
    for row in range(3):
        w = prior * flags[row]
        w = w / w.sum()
        late = sum(w[i] * raw[n][row] for i, n in enumerate(NAMES))
        torch.testing.assert_close(out.logits[row], (1 - lam) * joint[row] + lam * late)
        torch.testing.assert_close(out.weights[row], lam * w)
    torch.testing.assert_close(out.logits[3], joint[3])  # nothing present: the joint prior
    assert torch.equal(out.weights[3], torch.zeros(3))
    assert out.modality_logits is not None
    for n in NAMES:
        p = PRESENT[n]
        torch.testing.assert_close(out.modality_logits[n][p], raw[n][p])
        assert (out.modality_logits[n][~p] == 0).all()


def test_hybrid_rejects_a_joint_head_without_hidden_layer() -> None:
    with pytest.raises(ValueError, match=r"'num_layers' must be an int >= 2, got 1"):
        build("hybrid", num_layers=1)


def test_registry_has_early_and_late() -> None:
    assert {"early", "late", "hybrid"} <= set(FUSIONS.names())
    assert FUSIONS.get("early").kinds == ("feature",)
    assert FUSIONS.get("late").kinds == FUSIONS.get("hybrid").kinds == ("decision",)
    assert is_decision_level("late") and not is_decision_level("early")


# --------------------------------------------------------------------------- the contract

DECISION_NAMES = [e.name for e in FUSIONS if "decision" in e.kinds]
# Non-default settings that switch code paths, tested in addition to each default build.
VARIANTS: dict[str, list[dict[str, object]]] = {
    "late": [
        {"combine": "learned"},
        {"combine": "stacking"},
        {"combine": "mean_probs"},
        {"hidden_dim": 3, "dropout": 0.1},
    ],
    "hybrid": [{"num_layers": 3, "head_hidden_dim": 3, "dropout": 0.1}],
}
CASES = [pytest.param(n, {}, id=n) for n in DECISION_NAMES] + [
    pytest.param(n, kw, id=f"{n}-" + "-".join(f"{k}={v}" for k, v in kw.items()))
    for n in DECISION_NAMES
    for kw in VARIANTS.get(n, [])
]


def build_seeded(name: str, hyper: dict[str, object], seed: int = 0) -> DecisionFusion:
    torch.manual_seed(seed)
    return FUSIONS.build(name, in_dims=dict(IN_DIMS), num_outputs=K, **hyper)


def run(
    fusion: DecisionFusion, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
) -> DecisionOutput:
    out = fusion(inputs, present)
    assert isinstance(out, DecisionOutput)
    return out


def projection(out: DecisionOutput) -> Tensor:
    """A random projection of the combined logits (not ``.sum()``, which can cancel)."""
    g = torch.Generator().manual_seed(11)
    return (out.logits * torch.randn(out.logits.shape, generator=g)).sum()


def assert_same(a: DecisionOutput, b: DecisionOutput, exact: bool = False) -> None:
    check = torch.equal if exact else torch.allclose
    assert check(a.logits, b.logits)
    assert sorted(a.modality_logits) == sorted(b.modality_logits) == NAMES
    for n in NAMES:
        assert check(a.modality_logits[n], b.modality_logits[n]), n
    assert (a.weights is None) == (b.weights is None)
    if a.weights is not None and b.weights is not None:
        assert check(a.weights, b.weights)


def test_the_decision_level_fusions_are_registered() -> None:
    assert {"late", "hybrid"} <= set(DECISION_NAMES)


@pytest.mark.parametrize("name", DECISION_NAMES)
def test_builder_is_a_decision_fusion_class(name: str) -> None:
    entry = FUSIONS.get(name)
    assert isinstance(entry.builder, type) and issubclass(entry.builder, DecisionFusion)
    params = list(inspect.signature(entry.builder).parameters)
    assert params[:2] == ["in_dims", "num_outputs"]  # both wired by build_model
    assert not set(params) & {"d_model", "heads", "layers", "hidden"}, params
    assert entry.description and "\n" not in entry.description
    fusion = build_seeded(name, {})
    assert fusion.names == NAMES and fusion.num_outputs == fusion.out_dim == K


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_output_shapes(name: str, hyper: dict[str, object], b: int) -> None:
    fusion = build_seeded(name, hyper).eval()
    out = run(fusion, *contract_inputs(b))
    assert out.logits.shape == (b, K)
    assert sorted(out.modality_logits) == NAMES
    for n in NAMES:
        assert out.modality_logits[n].shape == (b, K), n
    assert out.weights is not None and out.weights.shape == (b, len(NAMES))


@pytest.mark.parametrize("pattern", ["all_present", "audio_absent_row1"])
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_gradients_reach_every_parameter_and_modality(
    name: str, hyper: dict[str, object], pattern: str
) -> None:
    fusion = build_seeded(name, hyper).train()
    inputs, present = contract_inputs(3, PATTERNS[pattern])
    for enc in inputs.values():
        enc.pooled.requires_grad_(True)
    projection(run(fusion, inputs, present)).backward()  # the combined logits only
    silent = [
        n
        for n, p in fusion.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not silent, f"the logits do not depend on {silent}"
    for n, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    for m, enc in inputs.items():
        assert enc.pooled.grad is not None and enc.pooled.grad.abs().sum() > 0, m


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_no_nan_and_absent_modalities_contribute_nothing(
    name: str, hyper: dict[str, object], pattern: str
) -> None:
    fusion = build_seeded(name, hyper).train()
    inputs, present = contract_inputs(3, PATTERNS[pattern])
    out = run(fusion, inputs, present)
    assert torch.isfinite(out.logits).all()
    assert out.weights is not None and torch.isfinite(out.weights).all()
    for i, n in enumerate(NAMES):
        assert torch.isfinite(out.modality_logits[n]).all(), n
        absent = ~present[n]
        assert (out.modality_logits[n][absent] == 0).all(), n  # zero where absent
        assert (out.weights[absent, i] == 0).all(), n  # and no share of the logits
    (projection(out) + sum(v.sum() for v in out.modality_logits.values())).backward()
    for n, p in fusion.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_absent_values_do_not_change_the_output(name: str, hyper: dict[str, object]) -> None:
    """Whatever an encoder left in an absent row, the fusion ignores it."""
    fusion = build_seeded(name, hyper).eval()
    inputs, present = contract_inputs(3, {"audio": [1], "video": [0, 2]})
    ref = run(fusion, inputs, present)
    g = torch.Generator().manual_seed(7)
    noisy = {}
    for m, enc in inputs.items():
        pooled = enc.pooled.clone()
        rows = ~present[m]
        pooled[rows] = torch.randn(pooled[rows].shape, generator=g) * 50
        noisy[m] = EncoderOutput(enc.sequence, enc.mask, pooled)
    with torch.no_grad():
        assert_same(run(fusion, noisy, present), ref)
        # ... while a present row's values do count
        moved = dict(inputs)
        moved["text"] = EncoderOutput(
            inputs["text"].sequence, inputs["text"].mask, inputs["text"].pooled + 3.0
        )
        assert not torch.allclose(run(fusion, moved, present).logits, ref.logits)


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_eval_is_deterministic_and_rows_independent(name: str, hyper: dict[str, object]) -> None:
    fusion = build_seeded(name, hyper).eval()
    inputs, present = contract_inputs(3, {"text": [1]})
    with torch.no_grad():
        first, second = run(fusion, inputs, present), run(fusion, inputs, present)
        assert_same(first, second, exact=True)
        for i in range(3):
            one = {
                m: EncoderOutput(e.sequence[i : i + 1], e.mask[i : i + 1], e.pooled[i : i + 1])
                for m, e in inputs.items()
            }
            alone = run(fusion, one, {m: p[i : i + 1] for m, p in present.items()})
            torch.testing.assert_close(alone.logits[0], first.logits[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_state_dict_round_trip(name: str, hyper: dict[str, object]) -> None:
    fusion = build_seeded(name, hyper, seed=0).eval()
    fresh = build_seeded(name, hyper, seed=1).eval()
    inputs, present = contract_inputs(3, {"video": [2]})
    with torch.no_grad():
        assert not torch.equal(
            run(fresh, inputs, present).logits, run(fusion, inputs, present).logits
        )
        fresh.load_state_dict(fusion.state_dict())
        assert_same(run(fresh, inputs, present), run(fusion, inputs, present), exact=True)


@pytest.mark.parametrize("order", list(itertools.permutations(NAMES))[1:])
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_output_independent_of_dict_order(
    name: str, hyper: dict[str, object], order: tuple[str, ...]
) -> None:
    fusion = build_seeded(name, hyper).eval()
    inputs, present = contract_inputs(3, {"audio": [0], "text": [2]})
    with torch.no_grad():
        ref = run(fusion, inputs, present)
        out = run(fusion, {m: inputs[m] for m in order}, {m: present[m] for m in order[::-1]})
    assert_same(out, ref, exact=True)
    torch.manual_seed(0)
    reordered = FUSIONS.build(name, in_dims={m: IN_DIMS[m] for m in order}, num_outputs=K, **hyper)
    assert list(reordered.state_dict()) == list(fusion.state_dict())


# --------------------------------------------------------------------------- in build_model

SCHEMA_SPECS = tuple(ModalitySpec(n, ModalityKind.FEATURES, shape=(d,)) for n, d in IN_DIMS.items())


def model_schema(task: str) -> Schema:
    return Schema(SCHEMA_SPECS, TargetSpec(task, 1 if task == "regression" else K))


def model_batch(task: str, b: int) -> Any:
    g = torch.Generator().manual_seed(0)
    samples = [
        Sample(
            f"ex{i}",
            {
                n: None if (n == "audio" and i == 1) else torch.randn(d, generator=g)
                for n, d in IN_DIMS.items()
            },
            float(i) if task == "regression" else i % K,
        )
        for i in range(b)
    ]
    return collate(samples, model_schema(task))


def model_config(name: str, **changes: Any) -> ModelConfig:
    encoders = {n: EncoderConfig("mlp", {"dim": d, "num_layers": 1}) for n, d in IN_DIMS.items()}
    return ModelConfig(encoders, FusionConfig(name), **changes)


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize(("task", "k"), [("classification", K), ("regression", 1)])
@pytest.mark.parametrize("name", DECISION_NAMES)
def test_in_build_model_the_fusion_predicts_without_a_head(
    name: str, task: str, k: int, b: int
) -> None:
    model = build_model(model_config(name), model_schema(task)).eval()
    assert model.decision_level and model.head is None
    assert isinstance(model.fusion, FUSIONS.get(name).builder)
    assert model.fusion.num_outputs == model.num_outputs == k  # wired from the target
    assert model.fusion.in_dims == dict(sorted(IN_DIMS.items()))  # from the encoders
    out = model(model_batch(task, b))
    assert isinstance(out, ModelOutput)
    assert out.features is None  # no joint representation at decision level
    shape = (b, K) if task == "classification" else (b,)
    assert out.logits.shape == shape
    assert out.modality_logits is not None and sorted(out.modality_logits) == NAMES
    assert all(v.shape == shape for v in out.modality_logits.values())
    assert out.weights is not None and out.weights.shape == (b, len(NAMES))
    if b > 1:  # audio is missing from example 1
        assert (out.modality_logits["audio"][1] == 0).all() and out.weights[1, 0] == 0


@pytest.mark.parametrize("name", DECISION_NAMES)
def test_in_build_model_a_head_or_num_outputs_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=rf"fusion '{name}' is decision-level.*head="):
        build_model(
            model_config(name, head=HeadConfig(hidden_dim=4)), model_schema("classification")
        )
    wired = ModelConfig(model_config(name).encoders, FusionConfig(name, {"num_outputs": 5}))
    with pytest.raises(
        ValueError, match=rf"fusion '{name}': parameter 'num_outputs' is set automatically"
    ):
        build_model(wired, model_schema("classification"))
