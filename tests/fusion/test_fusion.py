"""Behaviour and numbers of early fusion, and the input checks every fusion shares.

(The decision-level strategies, late and hybrid, moved to ``polymodal.models.decision``.)
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from polymodal.fusion import FUSIONS, EarlyFusion, Fusion, FusionOutput, build_fusion
from polymodal.outputs import EncoderOutput

IN_DIMS = {"video": 6, "audio": 4, "text": 5}  # insertion order differs from sorted order
NAMES = sorted(IN_DIMS)  # ["audio", "text", "video"]

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


# --------------------------------------------------------------------------- early fusion


def test_early_concatenates_zeroed_vectors_and_presence_flags() -> None:
    fusion = build_fusion("early", IN_DIMS, hidden_dim=8).eval()
    assert isinstance(fusion, EarlyFusion) and isinstance(fusion, Fusion)
    inputs = make_inputs()
    out = fusion(inputs, PRESENT)
    assert isinstance(out, FusionOutput)
    assert out.features.shape == (4, 8) and fusion.out_dim == 8
    assert out.weights is None
    flags = torch.stack([PRESENT[n] for n in NAMES], 1).float()
    z = torch.cat(
        [inputs[n].pooled * flags[:, i : i + 1] for i, n in enumerate(NAMES)] + [flags], 1
    )
    assert z.shape == (4, 4 + 5 + 6 + 3)
    torch.testing.assert_close(out.features, fusion.mlp(z))


def test_early_absent_values_do_not_change_output() -> None:
    fusion = build_fusion("early", IN_DIMS, hidden_dim=8, num_layers=2).eval()
    inputs = make_inputs()
    ref = fusion(inputs, PRESENT).features
    for name in NAMES:
        absent = ~PRESENT[name]
        noisy = inputs[name].pooled.clone()
        noisy[absent] = torch.randn(int(absent.sum()), IN_DIMS[name]) * 100
        torch.testing.assert_close(fusion(with_pooled(inputs, name, noisy), PRESENT).features, ref)
        noisy[absent] = float("nan")  # not even NaN in an absent row leaks
        torch.testing.assert_close(fusion(with_pooled(inputs, name, noisy), PRESENT).features, ref)
    # the values of a present modality do matter
    changed = inputs["text"].pooled + 1.0
    assert not torch.allclose(
        fusion(with_pooled(inputs, "text", changed), PRESENT).features[0], ref[0]
    )


def test_early_absent_differs_from_present_zero_vector() -> None:
    """The presence flag tells 'missing' apart from a genuine all-zero embedding."""
    fusion = build_fusion("early", IN_DIMS, hidden_dim=8).eval()
    inputs = make_inputs(b=1)
    zero = with_pooled(inputs, "audio", torch.zeros(1, 4))
    all_in = {n: torch.ones(1, dtype=torch.bool) for n in NAMES}
    audio_out = dict(all_in, audio=torch.zeros(1, dtype=torch.bool))
    assert not torch.allclose(fusion(zero, all_in).features, fusion(zero, audio_out).features)


def test_early_hyper_parameter_errors() -> None:
    with pytest.raises(ValueError, match=r"'hidden_dim' must be an int >= 1, got 0"):
        build_fusion("early", IN_DIMS, hidden_dim=0)
    with pytest.raises(ValueError, match=r"'dropout' must be a float in \[0, 1\), got 1.5"):
        build_fusion("early", IN_DIMS, dropout=1.5)
    with pytest.raises(ValueError, match=r"Unknown activation 'gelo'.*Did you mean 'gelu'"):
        build_fusion("early", IN_DIMS, activation="gelo")
    with pytest.raises(TypeError, match="unexpected keyword argument 'hiden_dim'"):
        build_fusion("early", IN_DIMS, hiden_dim=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_outputs'"):
        build_fusion("early", IN_DIMS, num_outputs=3)  # a fusion gives features, not logits


# --------------------------------------------------------------------------- shared input checks


@pytest.mark.parametrize("name", ["early", "gmu", "mult"])
def test_forward_input_errors(name: str) -> None:
    fusion = build_fusion(name, IN_DIMS)
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


def test_build_fusion_unknown_name_suggests() -> None:
    with pytest.raises(ValueError, match=r"Unknown fusion 'erly'.*Did you mean 'early'"):
        build_fusion("erly", IN_DIMS)
    with pytest.raises(ValueError, match="at least one modality"):
        build_fusion("early", {})


def test_feature_fusions_are_registered_as_feature_level() -> None:
    names = {e.name for e in FUSIONS if e.kinds == ("feature",)}
    assert {"early", "attention", "gmu", "graph", "tensor", "lowrank"} <= names
    assert {"mult", "coattention", "bottleneck"} <= names
    assert not {"late", "hybrid"} & names
