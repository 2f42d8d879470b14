"""The contract every registered fusion keeps, run over the whole FUSIONS registry.

Fusions are discovered at import time, so a strategy registered later is tested here
without touching this file.  Each is built with its default hyper-parameters for three
modalities of different dims and sequence lengths.  The suite covers the feature-level
fusions (``kind="feature"``: features out, for a head to read); decision-level ones
(``kind="decision"``, registered by :mod:`polymodal.models.decision`) have their own tests.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

import polymodal.fusion  # noqa: F401  # registers every fusion
from polymodal.cli.list_cmd import registry_for
from polymodal.cli.main import main
from polymodal.encoders.base import masked_mean
from polymodal.fusion.base import FUSIONS, Fusion, build_fusion
from polymodal.outputs import EncoderOutput, FusionOutput

KINDS = ("feature", "decision")  # what a fusion may declare
FUSION_NAMES = [e.name for e in FUSIONS if "feature" in e.kinds]
# Non-default settings that switch code paths, tested in addition to each default build.
VARIANTS: dict[str, list[dict[str, object]]] = {
    "early": [{"num_layers": 2, "norm": True, "dropout": 0.1}],
    "tensor": [{"num_layers": 2, "proj_dim": 3}],
    "lowrank": [{"rank": 1, "hidden_dim": 3}],
    "mult": [{"num_layers": 1, "num_heads": 2, "hidden_dim": 8}],
    "bottleneck": [{"num_layers": 3, "fusion_layer": 2, "num_bottlenecks": 1}],
    "graph": [{"nodes": "time", "num_layers": 1}],
}
CASES = [pytest.param(n, {}, id=n) for n in FUSION_NAMES] + [
    pytest.param(n, kw, id=f"{n}-" + "-".join(f"{k}={v}" for k, v in kw.items()))
    for n in FUSION_NAMES
    for kw in VARIANTS.get(n, [])
]
IN_DIMS = {"video": 6, "audio": 4, "text": 5}  # insertion order differs from sorted order
NAMES = sorted(IN_DIMS)
LENGTHS = {"audio": 4, "text": 3, "video": 2}  # max sequence length per modality


def build(name: str, hyper: dict[str, object], seed: int = 0) -> Fusion:
    torch.manual_seed(seed)
    return build_fusion(name, dict(IN_DIMS), **hyper)


def make_inputs(
    b: int, absent: dict[str, list[int]] | None = None, seed: int = 0
) -> tuple[dict[str, EncoderOutput], dict[str, Tensor]]:
    """Encoder outputs as encoders give them: padded sequences, masks, masked-mean pooled.

    ``absent`` maps modality -> rows where it is missing (mask all False there).
    """
    g = torch.Generator().manual_seed(seed)
    inputs: dict[str, EncoderOutput] = {}
    present: dict[str, Tensor] = {}
    for name, d in IN_DIMS.items():
        length = LENGTHS[name]
        pres = torch.ones(b, dtype=torch.bool)
        pres[(absent or {}).get(name, [])] = False
        lens = (torch.arange(b) % length) + 1  # 1..L valid steps
        mask = (torch.arange(length)[None, :] < lens[:, None]) & pres[:, None]  # (B, L)
        seq = torch.randn(b, length, d, generator=g) * mask[..., None]  # (B, L, D)
        inputs[name] = EncoderOutput(seq, mask, masked_mean(seq, mask))
        present[name] = pres
    return inputs, present


def run(
    fusion: Fusion, inputs: dict[str, EncoderOutput], present: dict[str, Tensor]
) -> FusionOutput:
    out = fusion(inputs, present)
    assert isinstance(out, FusionOutput)
    return out


def outputs_sum(out: FusionOutput) -> Tensor:
    # A random projection, not .sum(): a LayerNorm'd output sums to a constant.
    g = torch.Generator().manual_seed(11)
    total = (out.features * torch.randn(out.features.shape, generator=g)).sum()
    if out.weights is not None:
        total = total + (out.weights * torch.randn(out.weights.shape, generator=g)).sum()
    return total


def assert_same(a: FusionOutput, b: FusionOutput, exact: bool = False) -> None:
    check = torch.equal if exact else torch.allclose
    assert check(a.features, b.features)
    assert (a.weights is None) == (b.weights is None)
    if a.weights is not None and b.weights is not None:
        assert check(a.weights, b.weights)


# Presence patterns over a batch of 3: every row present, one modality absent for some rows,
# one modality absent for every row, every modality absent for one row, nothing at all.
PATTERNS: dict[str, dict[str, list[int]]] = {
    "all_present": {},
    "audio_absent_row1": {"audio": [1]},
    "text_absent_everywhere": {"text": [0, 1, 2]},
    "row2_empty": {"audio": [2], "text": [2], "video": [2]},
    "all_absent": {n: [0, 1, 2] for n in NAMES},
}


def test_registry_is_not_empty() -> None:
    assert "early" in FUSION_NAMES and len(FUSION_NAMES) > 1


def test_every_fusion_declares_its_level() -> None:
    for entry in FUSIONS:
        assert len(entry.kinds) == 1 and entry.kinds[0] in KINDS, (entry.name, entry.kinds)


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_builder_signature_and_description(name: str) -> None:
    entry = FUSIONS.get(name)
    params = list(inspect.signature(entry.builder).parameters)
    assert params[0] == "in_dims"
    assert "num_outputs" not in params  # features out: the head, not the fusion, knows K
    # one name per hyperparameter, shared with the encoders
    assert not set(params) & {"d_model", "heads", "layers", "hidden"}, params
    assert entry.description and "\n" not in entry.description


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_registered_builder_is_the_fusion_class(name: str) -> None:
    """Feature-level fusions register their class, so each default is written once."""
    builder = FUSIONS.get(name).builder
    assert isinstance(builder, type) and issubclass(builder, Fusion)
    assert isinstance(build(name, {}), builder)


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_output_shapes(name: str, hyper: dict[str, object], b: int) -> None:
    fusion = build(name, hyper).eval()
    assert fusion.names == NAMES and isinstance(fusion.out_dim, int) and fusion.out_dim > 0
    out = run(fusion, *make_inputs(b))
    assert out.features.shape == (b, fusion.out_dim)
    if out.weights is not None:
        assert out.weights.shape == (b, len(NAMES))


@pytest.mark.parametrize("pattern", ["all_present", "audio_absent_row1"])
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_gradients_reach_every_parameter_and_modality(
    name: str, hyper: dict[str, object], pattern: str
) -> None:
    fusion = build(name, hyper).train()
    inputs, present = make_inputs(3, PATTERNS[pattern])
    for enc in inputs.values():
        enc.sequence.requires_grad_(True)
        enc.pooled.requires_grad_(True)
    outputs_sum(run(fusion, inputs, present)).backward()
    missing = [n for n, p in fusion.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing}"
    for n, p in fusion.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n
    for m, enc in inputs.items():
        grads = [t.grad for t in (enc.sequence, enc.pooled) if t.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"modality {m!r} is ignored"


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_finite_outputs_and_gradients_with_missing_modalities(
    name: str, hyper: dict[str, object], pattern: str
) -> None:
    fusion = build(name, hyper).train()
    out = run(fusion, *make_inputs(3, PATTERNS[pattern]))
    assert torch.isfinite(out.features).all()
    if out.weights is not None:
        assert torch.isfinite(out.weights).all()
    outputs_sum(out).backward()
    for n, p in fusion.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_absent_values_do_not_change_the_output(name: str, hyper: dict[str, object]) -> None:
    """Whatever an encoder left in an absent row, the fusion ignores it."""
    fusion = build(name, hyper).eval()
    absent = {"audio": [1], "video": [0, 2]}
    inputs, present = make_inputs(3, absent)
    ref = run(fusion, inputs, present)
    g = torch.Generator().manual_seed(7)
    noisy = {}
    for m, enc in inputs.items():
        rows = ~present[m]
        seq, pooled = enc.sequence.clone(), enc.pooled.clone()
        seq[rows] = torch.randn(seq[rows].shape, generator=g) * 50
        pooled[rows] = torch.randn(pooled[rows].shape, generator=g) * 50
        noisy[m] = EncoderOutput(seq, enc.mask, pooled)
    out = run(fusion, noisy, present)
    torch.testing.assert_close(out.features, ref.features)
    if ref.weights is not None:
        assert out.weights is not None
        torch.testing.assert_close(out.weights, ref.weights)


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_eval_is_deterministic_and_rows_independent(name: str, hyper: dict[str, object]) -> None:
    fusion = build(name, hyper).eval()
    inputs, present = make_inputs(3, {"text": [1]})
    with torch.no_grad():
        first, second = run(fusion, inputs, present), run(fusion, inputs, present)
        assert_same(first, second, exact=True)
        for i in range(3):
            one = {
                m: EncoderOutput(e.sequence[i : i + 1], e.mask[i : i + 1], e.pooled[i : i + 1])
                for m, e in inputs.items()
            }
            alone = run(fusion, one, {m: p[i : i + 1] for m, p in present.items()})
            torch.testing.assert_close(alone.features[0], first.features[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_state_dict_round_trip(name: str, hyper: dict[str, object]) -> None:
    fusion = build(name, hyper, seed=0).eval()
    fresh = build(name, hyper, seed=1).eval()
    fresh.load_state_dict(fusion.state_dict())
    inputs, present = make_inputs(3, {"video": [2]})
    with torch.no_grad():
        assert_same(run(fresh, inputs, present), run(fusion, inputs, present), exact=True)


@pytest.mark.parametrize(("name", "hyper"), CASES)
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(NAMES), present_order=st.permutations(NAMES))
def test_output_independent_of_dict_order(
    name: str, hyper: dict[str, object], order: list[str], present_order: list[str]
) -> None:
    fusion = build(name, hyper).eval()
    inputs, present = make_inputs(3, {"audio": [0], "text": [2]})
    with torch.no_grad():
        ref = run(fusion, inputs, present)
        out = run(fusion, {m: inputs[m] for m in order}, {m: present[m] for m in present_order})
    assert_same(out, ref, exact=True)
    # built from in_dims in another order: same modules, same order of parameters
    torch.manual_seed(0)
    reordered = build_fusion(name, {m: IN_DIMS[m] for m in order}, **hyper)
    assert list(reordered.state_dict()) == list(fusion.state_dict())


def test_every_fusion_is_listed_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "fusions"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "input", "description"]
    lines = [line for line in rows if not line.startswith(" ")]  # the rest: parameters
    names = registry_for("fusions").names()  # decision-level fusions included
    assert [line.split()[0] for line in lines] == names
    for line, name in zip(lines, names, strict=True):
        assert FUSIONS.get(name).description in line
        assert line.split()[1] == ",".join(FUSIONS.get(name).kinds)  # feature / decision
    assert {line.split()[1] for line in lines} == {"feature", "decision"}


def test_every_training_task_is_listed_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "tasks"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["captioning", "context", "contrastive", "supervised"]
