"""Perturbations: the contract every registered one keeps, and damage growing with severity."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import Tensor

from polymodal.data.modality import ModalityKind
from polymodal.data.sample import Batch, ModalityBatch
from polymodal.inference import data_loader
from polymodal.robustness import (
    PERTURBATIONS,
    drop_modalities,
    perturb,
    perturb_batch,
    perturbations_for,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _synthetic(kind: str) -> ModalityBatch:
    """A small batch of ``kind`` with one absent example and padding where sequences pad."""
    g = _gen(123)
    present = torch.tensor([True, True, False, True])
    if kind == "text":
        texts = ["the quick brown fox", "jumps over the lazy dog", "", "a b c d e f"]
        return ModalityBatch(texts, present)
    shapes = {
        "image": (4, 3, 12, 12),
        "audio": (4, 400),
        "video": (4, 6, 3, 8, 8),
        "timeseries": (4, 20, 3),
        "tabular": (4, 7),
        "features": (4, 9, 5),
    }
    values = torch.randn(shapes[kind], generator=g)
    if kind == "audio":
        values = values * 0.1
    if not ModalityKind(kind).is_sequence and kind != "features":
        return ModalityBatch(values * present.view(-1, *[1] * (values.dim() - 1)), present)
    t = values.shape[1]
    lengths = torch.tensor([t, t - 3, 0, t // 2])
    mask = torch.arange(t)[None] < lengths[:, None]
    keep = mask.view(*mask.shape, *[1] * (values.dim() - 2))
    return ModalityBatch(values * keep, present, lengths, mask)


CASES = [(e.name, kind) for e in PERTURBATIONS for kind in e.kinds]


@pytest.mark.parametrize(("name", "kind"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_contract(name: str, kind: str) -> None:
    batch = _synthetic(kind)
    snapshot = list(batch.values) if kind == "text" else batch.values.clone()
    # Severity 0 is the identity: the very same batch, tensors and values.
    assert perturb(batch, name, kind, 0.0, _gen()) is batch
    out = perturb(batch, name, kind, 0.7, _gen(1))
    again = perturb(batch, name, kind, 0.7, _gen(1))
    # The input is never modified.
    if kind == "text":
        assert batch.values == snapshot
        assert out.values == again.values
        assert out.values[2] == ""
        return
    assert isinstance(out.values, Tensor) and isinstance(again.values, Tensor)
    assert torch.equal(batch.values, snapshot)
    # Deterministic given the generator; shapes, dtype and padding kept.
    assert torch.equal(out.values, again.values)
    assert out.values.shape == batch.values.shape and out.values.dtype == batch.values.dtype
    assert torch.isfinite(out.values).all()
    assert not out.values[2].any()  # the absent example stays zero
    if batch.mask is not None:
        pad = ~batch.mask
        assert not out.values[pad].any()
    # Severity > 0 changes something (contrast at 0.7 on noise always does).
    assert not torch.equal(out.values, batch.values) or not torch.equal(out.present, batch.present)


@pytest.mark.parametrize("kind", [k.value for k in ModalityKind])
def test_missing_at_severity_one_removes_the_modality(kind: str) -> None:
    batch = _synthetic(kind)
    out = perturb(batch, "missing", kind, 1.0, _gen())
    assert not out.present.any()
    if kind == "text":
        assert out.values == [""] * 4
    else:
        assert isinstance(out.values, Tensor) and not out.values.any()
    if out.lengths is not None:
        assert not out.lengths.any()


def test_missing_rate_follows_severity() -> None:
    batch = ModalityBatch(torch.ones(2000, 3), torch.ones(2000, dtype=torch.bool))
    kept = perturb(batch, "missing", "tabular", 0.3, _gen()).present.float().mean()
    assert abs(float(kept) - 0.7) < 0.04


def test_different_seeds_differ() -> None:
    batch = _synthetic("image")
    a = perturb(batch, "gaussian_noise", "image", 0.5, _gen(0)).values
    b = perturb(batch, "gaussian_noise", "image", 0.5, _gen(1)).values
    assert isinstance(a, Tensor) and isinstance(b, Tensor) and not torch.equal(a, b)


def test_white_noise_snr_map() -> None:
    x = torch.sin(torch.linspace(0, 200, 8000))[None].repeat(4, 1) * 0.1
    batch = ModalityBatch(x, torch.ones(4, dtype=torch.bool))
    for severity, snr_db in ((1.0, -10.0), (0.1, 10.0)):
        noisy = perturb(batch, "white_noise", "audio", severity, _gen())
        assert isinstance(noisy.values, Tensor)
        noise = noisy.values - x
        measured = 10 * torch.log10(x.pow(2).mean() / noise.pow(2).mean())
        assert abs(float(measured) - snr_db) < 0.5


def test_step_drop_holds_previous_frame() -> None:
    x = torch.arange(1, 11, dtype=torch.float32).view(1, 10, 1)
    batch = ModalityBatch(x, torch.ones(1, dtype=torch.bool), torch.tensor([10]))
    out = perturb(batch, "step_drop", "timeseries", 0.5, _gen(3)).values
    assert isinstance(out, Tensor)
    seq = out[0, :, 0]
    assert seq[0] == 1 and bool((seq[1:] >= seq[:-1]).all())  # held values never go back
    assert set(seq.tolist()) <= set(x.flatten().tolist()) and len(set(seq.tolist())) < 10


def test_occlusion_covers_the_severity_fraction() -> None:
    x = torch.ones(2, 3, 20, 20)
    out = perturb(
        ModalityBatch(x, torch.ones(2, dtype=torch.bool)), "occlusion", "image", 0.25, _gen()
    )
    assert isinstance(out.values, Tensor)
    assert float((out.values == 0).float().mean()) == pytest.approx(0.25)


def test_text_word_drop_and_typos() -> None:
    batch = ModalityBatch(["one two three four five six"] * 3, torch.ones(3, dtype=torch.bool))
    assert perturb(batch, "word_drop", "text", 1.0, _gen()).values == [""] * 3
    out = perturb(batch, "typo", "text", 0.5, _gen()).values
    assert all(o != batch.values[0] for o in out)


# --------------------------------------------------------------------------- errors


def test_unknown_perturbation_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"Unknown perturbation 'blurr'.*Did you mean 'blur'"):
        perturb(_synthetic("image"), "blurr", "image", 0.5, _gen())


def test_wrong_kind_names_the_parameter_and_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"'perturbation' parameter must be one of .*'step_drop'.*Got 'blur'"
    ):
        perturb(_synthetic("timeseries"), "blur", "timeseries", 0.5, _gen())


@pytest.mark.parametrize("severity", [-0.1, 1.5, float("nan"), True])
def test_severity_out_of_range(severity: float) -> None:
    with pytest.raises(ValueError, match=r"'severity' parameter must be a float in \[0, 1\]"):
        perturb(_synthetic("image"), "contrast", "image", severity, _gen())


def test_drop_unknown_modality() -> None:
    batch = Batch({"image": _synthetic("image")}, None, list("abcd"))
    with pytest.raises(ValueError, match=r"Unknown modality 'audio'.*Valid modalitys: image"):
        drop_modalities(batch, ["audio"])


def test_perturbations_for_kind() -> None:
    assert perturbations_for("audio") == ["missing", "time_dropout", "white_noise"]
    with pytest.raises(ValueError, match="Unknown modality kind 'sound'"):
        perturbations_for("sound")


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def av_batch(data_root: object) -> tuple[Batch, object]:
    from polymodal import load_dataset

    ds = load_dataset("av_digits", split="test")
    return next(iter(data_loader(ds, 32))), ds.schema


def _damage(clean: ModalityBatch, out: ModalityBatch) -> float:
    assert isinstance(clean.values, Tensor) and isinstance(out.values, Tensor)
    return float((out.values - clean.values).pow(2).mean())


@pytest.mark.parametrize("modality", ["audio", "image"])
def test_damage_grows_with_severity_on_real_data(
    av_batch: tuple[Batch, object], modality: str
) -> None:
    batch, schema = av_batch
    kind = schema[modality].kind  # type: ignore[attr-defined]
    for name in perturbations_for(kind):
        damage = [
            sum(
                _damage(
                    batch[modality],
                    perturb_batch(batch, schema, modality, name, s, _gen(seed))[modality],
                )  # type: ignore[arg-type]
                for seed in range(3)
            )
            for s in (0.0, 0.25, 0.5, 0.75, 1.0)
        ]
        assert damage[0] == 0.0, name
        assert all(b >= a for a, b in pairwise(damage)), (name, damage)
        assert damage[-1] > 0.0, name
