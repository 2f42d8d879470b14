"""The contract every registered encoder keeps, run over the whole ENCODERS registry.

Encoders are discovered at import time; each is built at a tiny size from a
:class:`ModalitySpec` of every kind its registry entry declares (``ENCODERS.get(name).kinds``)
and fed a tiny collated batch of that kind.  Pretrained encoders are included; when their
weights are frozen the gradient check covers only what is trainable (e.g. a projection)
and is skipped if nothing is.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import polymodal.encoders  # noqa: F401  # registers every encoder
from polymodal.cli.main import main
from polymodal.data import ModalityBatch, ModalityKind, ModalitySpec, Sample, Schema, collate
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput

ENCODER_NAMES = ENCODERS.names()
PRETRAINED = {"minilm", "efficientnet_lite0", "audio_ge2e"}  # frozen backbone by default


# Tiny hyper-parameters, passed only where the builder's signature has them.
TINY: dict[str, object] = {
    "dim": 8,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 8,
    "mlp_ratio": 2.0,
    "n_mels": 16,
    "frame_dim": 8,
    "max_length": 16,
}
TINY_BY_NAME: dict[str, dict[str, object]] = {
    "image_cnn": {"channels": [4, 8]},
    "audio_cnn": {"channels": [4, 8]},
    "ts_cnn": {"channels": 8, "num_layers": 2},
    "video_gru": {"frame_kwargs": {"channels": [4, 8]}},
    "video_transformer": {"frame_kwargs": {"channels": [4, 8]}},
}

SPECS: dict[ModalityKind, ModalitySpec] = {
    ModalityKind.TEXT: ModalitySpec("m", "text"),
    ModalityKind.IMAGE: ModalitySpec("m", "image", shape=(3, 32, 32)),
    ModalityKind.AUDIO: ModalitySpec("m", "audio", shape=(), sample_rate=16000.0),
    ModalityKind.VIDEO: ModalitySpec("m", "video", shape=(3, 32, 32), sample_rate=4.0),
    ModalityKind.TIMESERIES: ModalitySpec("m", "timeseries", shape=(3,), sample_rate=10.0),
    ModalityKind.TABULAR: ModalitySpec("m", "tabular", shape=(5,)),
    ModalityKind.FEATURES: ModalitySpec("m", "features", shape=(6,), sequence=True),
}
TEXTS = ("a tiny sentence about cats", "hello world", "x")


def _value(kind: ModalityKind, i: int, g: torch.Generator) -> object:
    """Example ``i`` of a tiny batch; sequences get different lengths per example."""
    if kind is ModalityKind.TEXT:
        return TEXTS[i % len(TEXTS)]
    if kind is ModalityKind.IMAGE:
        return torch.rand(3, 32, 32, generator=g)
    if kind is ModalityKind.AUDIO:
        return torch.randn(1600 - 400 * (i % 3), generator=g) * 0.1
    if kind is ModalityKind.VIDEO:
        return torch.rand(3 - i % 3, 3, 32, 32, generator=g)
    if kind is ModalityKind.TIMESERIES:
        return torch.randn(6 - 2 * (i % 3), 3, generator=g)
    if kind is ModalityKind.TABULAR:
        return torch.randn(5, generator=g)
    return torch.randn(4 - i % 3, 6, generator=g)


def tiny_batch(kind: ModalityKind, b: int = 3, absent: tuple[int, ...] = ()) -> ModalityBatch:
    g = torch.Generator().manual_seed(0)
    samples = [
        Sample(f"ex{i}", {"m": None if i in absent else _value(kind, i, g)}) for i in range(b)
    ]
    return collate(samples, Schema((SPECS[kind],)))["m"]


def build(name: str, kind: ModalityKind, seed: int = 0) -> Encoder:
    builder = ENCODERS.get(name).builder
    accepted = inspect.signature(builder).parameters
    hyper = {k: v for k, v in {**TINY, **TINY_BY_NAME.get(name, {})}.items() if k in accepted}
    torch.manual_seed(seed)
    return builder(SPECS[kind], **hyper)


def declared_kinds(name: str) -> list[ModalityKind]:
    """The kinds ``name`` is registered for (a kind no tiny spec covers fails the test)."""
    return [ModalityKind.parse(k) for k in ENCODERS.get(name).kinds]


# One case per (encoder, declared kind); the id names the kind only for multi-kind encoders.
CASES = [
    pytest.param(n, k, id=n if len(declared_kinds(n)) == 1 else f"{n}-{k.value}")
    for n in ENCODER_NAMES
    for k in declared_kinds(n)
]


def setup(name: str, kind: ModalityKind) -> tuple[ModalityKind, Encoder]:
    return kind, build(name, kind)


def check_output(out: EncoderOutput, b: int, d: int) -> None:
    assert isinstance(out, EncoderOutput)
    assert out.pooled.shape == (b, d)
    assert out.sequence.dim() == 3 and out.sequence.shape[0] == b and out.sequence.shape[2] == d
    assert out.mask.shape == out.sequence.shape[:2] and out.mask.dtype == torch.bool


def test_registry_is_not_empty() -> None:
    assert ENCODER_NAMES, "no encoder registered"


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_builder_signature_and_description(name: str) -> None:
    entry = ENCODERS.get(name)
    params = list(inspect.signature(entry.builder).parameters.values())
    assert params[0].name == "spec"
    assert params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)
    assert "dim" in [p.name for p in params]
    assert entry.description and "\n" not in entry.description


# The old, per-encoder names of shared hyperparameters: one name each now.
RETIRED_NAMES = {"hidden": "hidden_dim", "layers": "num_layers", "heads": "num_heads"}


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_hyperparameters_use_the_shared_names(name: str) -> None:
    params = set(inspect.signature(ENCODERS.get(name).builder).parameters)
    old = {p: RETIRED_NAMES[p] for p in params & set(RETIRED_NAMES)}
    assert not old, f"{name} still names {sorted(old)}; use {sorted(old.values())}"


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_every_encoder_declares_the_kinds_it_accepts(name: str) -> None:
    kinds = ENCODERS.get(name).kinds
    assert kinds, f"{name} is registered without kind=..."
    valid = {k.value for k in ModalityKind}
    assert set(kinds) <= valid, f"{name} declares unknown kinds {sorted(set(kinds) - valid)}"
    assert len(set(kinds)) == len(kinds)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_kind_and_out_dim(name: str, kind: ModalityKind) -> None:
    kind, enc = setup(name, kind)
    assert isinstance(enc, Encoder)
    assert enc.kind is kind and enc.kind.value in ENCODERS.get(name).kinds
    assert isinstance(enc.out_dim, int) and enc.out_dim == TINY["dim"]


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_an_undeclared_kind_is_rejected_at_build(name: str) -> None:
    """The declared kinds are the accepted ones: any other kind fails, naming the encoder."""
    declared = set(ENCODERS.get(name).kinds)
    for kind in SPECS:
        if kind.value in declared:
            continue
        with pytest.raises(ValueError, match=rf"{name}.*kind"):
            build(name, kind)


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize(("name", "kind"), CASES)
def test_output_shapes(name: str, kind: ModalityKind, b: int) -> None:
    kind, enc = setup(name, kind)
    enc.eval()
    with torch.no_grad():
        check_output(enc(tiny_batch(kind, b)), b, enc.out_dim)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_gradients_reach_every_trainable_parameter(name: str, kind: ModalityKind) -> None:
    kind, enc = setup(name, kind)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    if not trainable:
        assert name in PRETRAINED, f"{name} has no trainable parameter"
        pytest.skip(f"{name} is frozen")
    enc.train()
    out = enc(tiny_batch(kind))
    (out.pooled.sum() + out.sequence.sum()).backward()
    params = dict(enc.named_parameters())
    missing = [n for n in trainable if params[n].grad is None]
    assert not missing, f"no gradient reached {missing}"
    for n in trainable:
        assert torch.isfinite(params[n].grad).all(), n  # type: ignore[arg-type]


@pytest.mark.parametrize("absent", [(1,), (0, 1, 2)], ids=["one_absent", "all_absent"])
@pytest.mark.parametrize(("name", "kind"), CASES)
def test_finite_with_absent_examples(
    name: str, kind: ModalityKind, absent: tuple[int, ...]
) -> None:
    kind, enc = setup(name, kind)
    batch = tiny_batch(kind, absent=absent)
    for mode in (True, False):
        enc.train(mode)
        out = enc(batch)
        check_output(out, 3, enc.out_dim)
        assert torch.isfinite(out.pooled).all() and torch.isfinite(out.sequence).all()


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_absent_example_does_not_change_the_others(name: str, kind: ModalityKind) -> None:
    kind, enc = setup(name, kind)
    enc.eval()
    batch = tiny_batch(kind)
    with torch.no_grad():
        full = enc(batch).pooled
        hidden = enc(batch.with_present(torch.tensor([True, False, True]))).pooled
    torch.testing.assert_close(hidden[[0, 2]], full[[0, 2]], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_eval_is_deterministic(name: str, kind: ModalityKind) -> None:
    kind, enc = setup(name, kind)
    enc.eval()
    batch = tiny_batch(kind, absent=(2,))
    with torch.no_grad():
        a, b = enc(batch), enc(batch)
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.sequence, b.sequence)
    assert torch.equal(a.mask, b.mask)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_state_dict_round_trip(name: str, kind: ModalityKind) -> None:
    kind, enc = setup(name, kind)
    fresh = build(name, kind, seed=1)
    fresh.load_state_dict(enc.state_dict())
    enc.eval(), fresh.eval()
    batch = tiny_batch(kind, absent=(1,))
    with torch.no_grad():
        a, b = enc(batch), fresh(batch)
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.sequence, b.sequence)


def test_every_encoder_is_listed_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "encoders"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "input", "description"]
    lines = [line for line in rows if not line.startswith(" ")]  # the rest: parameters
    assert [line.split()[0] for line in lines] == ENCODER_NAMES
    for line, name in zip(lines, ENCODER_NAMES, strict=True):
        assert ENCODERS.get(name).description in line
        assert line.split()[1] == ",".join(ENCODERS.get(name).kinds)  # the kind it reads
