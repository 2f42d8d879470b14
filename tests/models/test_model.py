"""MultimodalModel, its configs and build_model, on tiny test encoders."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from polymodal.data import (
    Batch,
    ModalityBatch,
    ModalityKind,
    ModalitySpec,
    Sample,
    Schema,
    TargetSpec,
    collate,
)
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, masked_mean
from polymodal.fusion import FUSIONS, build_fusion
from polymodal.models import (
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    ModelConfig,
    ModelOutput,
    MultimodalModel,
    build_model,
)
from polymodal.models.decision import LateFusion
from polymodal.registry import Entry

# --------------------------------------------------------------------------- tiny encoders

BUILT: list[str] = []  # names of the tiny encoders built, to see when building happens


class TinyTabular(Encoder):
    kind = ModalityKind.TABULAR

    def __init__(self, spec: ModalitySpec, dim: int = 4) -> None:
        super().__init__()
        assert spec.shape is not None
        self.proj = nn.Linear(spec.shape[0], dim)
        self.out_dim = dim

    def forward(self, batch):  # type: ignore[no-untyped-def]
        h = self.proj(batch.values)  # (B, D)
        return EncoderOutput(h[:, None], torch.ones_like(h[:, :1], dtype=torch.bool), h)


class TinySeries(Encoder):
    kind = ModalityKind.TIMESERIES

    def __init__(self, spec: ModalitySpec, dim: int = 4, scale: float = 1.0) -> None:
        super().__init__()
        assert spec.shape is not None
        self.proj = nn.Linear(spec.shape[0], dim)
        self.scale = scale
        self.out_dim = dim

    def forward(self, batch):  # type: ignore[no-untyped-def]
        h = self.proj(batch.values) * self.scale  # (B, T, D)
        return EncoderOutput(h, batch.mask, masked_mean(h, batch.mask))


class TinyText(Encoder):
    kind = ModalityKind.TEXT

    def __init__(self, spec: ModalitySpec, dim: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(2, dim)
        self.out_dim = dim

    def forward(self, batch):  # type: ignore[no-untyped-def]
        feats = torch.tensor([[len(t) / 10, t.count("a")] for t in batch.values])  # (B, 2)
        h = self.proj(feats)
        return EncoderOutput(h[:, None], torch.ones_like(h[:, :1], dtype=torch.bool), h)


def _builder(cls: type[Encoder], name: str):  # type: ignore[no-untyped-def]
    def build(spec: ModalitySpec, **params):  # type: ignore[no-untyped-def]
        BUILT.append(name)
        return cls(spec, **params)

    sig = inspect.signature(cls.__init__)
    build.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    return build


class NoOutDim(TinyTabular):
    """Builds fine but has no usable ``out_dim``."""

    def __init__(self, spec: ModalitySpec, dim: int = 4) -> None:
        super().__init__(spec, dim)
        self.out_dim = 0


TINY = [
    ("tiny_tab", TinyTabular),
    ("tiny_ts", TinySeries),
    ("tiny_text", TinyText),
    ("tiny_no_out_dim", NoOutDim),
]


@pytest.fixture(autouse=True)
def tiny_encoders(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register the tiny encoders for one test only, each for its class's kind."""
    import polymodal.encoders  # noqa: F401  # the real ones first, as build_model does

    for name, cls in TINY:
        entry = Entry(name, _builder(cls, name), "test", (cls.kind.value,))
        monkeypatch.setitem(ENCODERS._entries, name, entry)
    BUILT.clear()
    yield


# --------------------------------------------------------------------------- data

SPECS = (
    ModalitySpec("tab", "tabular", shape=(5,)),
    ModalitySpec("acc", "timeseries", shape=(3,), sample_rate=10.0),
    ModalitySpec("caption", "text"),
)


def schema(task: str = "classification", k: int = 3) -> Schema:
    return Schema(SPECS, TargetSpec(task, 1 if task == "regression" else k))


def samples(n: int = 4, missing: dict[int, tuple[str, ...]] | None = None) -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        mods: dict = {
            "tab": torch.randn(5, generator=g),
            "acc": torch.randn(2 + i % 3, 3, generator=g),
            "caption": "a" * (i + 1),
        }
        for m in (missing or {}).get(i, ()):
            mods[m] = None
        out.append(Sample(f"ex{i}", mods, target=i % 3))
    return out


def batch_for(task: str = "classification", n: int = 4, **kw: object) -> Batch:
    b = collate(samples(n, **kw), schema("classification"))  # type: ignore[arg-type]
    if task == "regression":
        b.target = torch.arange(n, dtype=torch.float32)
    elif task == "multilabel":
        b.target = torch.zeros(n, 3)
    return b


def config(fusion: str = "early", **fusion_params: object) -> ModelConfig:
    return ModelConfig(
        encoders={
            "acc": EncoderConfig("tiny_ts", {"dim": 3}),
            "tab": EncoderConfig("tiny_tab", {"dim": 6}),
        },
        fusion=FusionConfig(fusion, dict(fusion_params)),
        head=HeadConfig(),
    )


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    ("task", "shape"), [("classification", (4, 3)), ("multilabel", (4, 3)), ("regression", (4,))]
)
@pytest.mark.parametrize("fusion", ["early", "late"])
def test_forward_shapes_per_task(task: str, shape: tuple[int, ...], fusion: str) -> None:
    model = build_model(config(fusion), schema(task))
    out = model(batch_for(task))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == shape
    assert model.num_outputs == (1 if task == "regression" else 3)
    assert model.fusion.in_dims == {"acc": 3, "tab": 6}  # wired from the encoders' out_dim
    if fusion == "late":  # decision level: the fusion predicts, there is no head
        assert model.decision_level and model.head is None
        assert model.fusion.num_outputs == model.num_outputs  # wired from the target
        assert out.features is None
        assert out.modality_logits is not None and out.weights is not None
        assert out.modality_logits["tab"].shape == shape
        assert out.weights.shape == (4, 2)
    else:
        assert not model.decision_level and model.head is not None
        assert out.features is not None and out.features.shape == (4, 128)
        assert out.modality_logits is None


def test_predict_per_task() -> None:
    batch = batch_for()
    model = build_model(config(), schema("classification"))
    model.train()
    pred = model.predict(batch)
    assert model.training  # mode restored
    assert pred.dtype == torch.long and pred.shape == (4,)
    assert torch.equal(pred, model.eval()(batch).logits.argmax(-1))

    ml = build_model(config(), schema("multilabel")).eval()
    logits = ml(batch).logits
    assert torch.equal(ml.predict(batch), (logits >= 0).long())
    assert torch.equal(ml.predict(batch, threshold=1.0), torch.zeros(4, 3, dtype=torch.long))

    reg = build_model(config(), schema("regression")).eval()
    torch.testing.assert_close(reg.predict(batch), reg(batch).logits)


def test_missing_modality_in_data_gives_finite_outputs() -> None:
    batch = batch_for(missing={0: ("tab",), 1: ("acc",), 2: ("tab", "acc")})
    for fusion in ("early", "late"):
        model = build_model(config(fusion), schema()).eval()
        assert torch.isfinite(model(batch).logits).all()


def test_late_mean_model_ignores_absent_modality() -> None:
    model = build_model(config("late"), schema()).eval()
    batch = batch_for(missing={1: ("tab",)})
    out = model(batch)
    # with 'tab' absent, example 1's logits are the 'acc' head's logits alone
    assert out.modality_logits is not None
    torch.testing.assert_close(out.logits[1], out.modality_logits["acc"][1])


def test_batch_lacking_a_modality_raises() -> None:
    model = build_model(config(), schema())
    batch = batch_for()
    del batch.modalities["acc"]
    with pytest.raises(ValueError, match=r"batch lacks modality 'acc'.*has \['tab', 'caption'\]"):
        model(batch)


def test_batch_with_wrong_shape_raises() -> None:
    model = build_model(config(), schema())
    batch = batch_for()
    batch.modalities["tab"].values = batch["tab"].values[:, :, None]
    with pytest.raises(
        ValueError,
        match=r"Modality 'tab' \(kind 'tabular'\): expected values of shape \(B, D\) "
        r"\(2 dims\), got shape \(4, 5, 1\)",
    ):
        model(batch)
    batch = batch_for()
    batch.modalities["acc"].values = batch["acc"].values[:3]
    with pytest.raises(ValueError, match=r"Modality 'acc': expected batch size 4.*\(3, 4, 3\)"):
        model(batch)
    batch = batch_for()
    batch.modalities["acc"].present = torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"Modality 'acc': present must be a \(4,\) bool"):
        model(batch)
    with pytest.raises(TypeError, match="expects a polymodal Batch"):
        model({"tab": batch["tab"]})  # type: ignore[arg-type]


def test_text_modality_layout_checked() -> None:
    cfg = ModelConfig({"caption": EncoderConfig("tiny_text")}, FusionConfig("late"), HeadConfig())
    model = build_model(cfg, schema())
    batch = batch_for()
    assert model(batch).logits.shape == (4, 3)
    batch.modalities["caption"].values = ["a", "b"]
    with pytest.raises(ValueError, match=r"'caption' \(kind 'text'\): expected a list of 4 str"):
        model(batch)
    batch.modalities["caption"].values = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"'caption' \(kind 'text'\).*got a tensor"):
        model(batch)


def test_constructor_checks() -> None:
    enc = {"tab": TinyTabular(SPECS[0], 6), "acc": TinySeries(SPECS[1], 3)}
    fusion = build_fusion("early", {"tab": 6, "acc": 3})
    model = MultimodalModel(enc, fusion, None, "classification", 3)
    assert isinstance(model.head, nn.Linear) and model.names == ["acc", "tab"]
    with pytest.raises(ValueError, match=r"encoders cover modalities \['tab'\].*\['acc', 'tab'\]"):
        MultimodalModel({"tab": enc["tab"]}, fusion, None, "classification", 3)
    bad = build_fusion("early", {"tab": 5, "acc": 3})
    with pytest.raises(ValueError, match=r"encoders\['tab'\].out_dim is 6.*in_dims\['tab'\] = 5"):
        MultimodalModel(enc, bad, None, "classification", 3)
    with pytest.raises(ValueError, match=r"Unknown task 'clasification'.*'classification'"):
        MultimodalModel(enc, fusion, None, "clasification", 3)
    with pytest.raises(ValueError, match=r"regression.*num_outputs must be 1; got 3"):
        MultimodalModel(enc, fusion, None, "regression", 3)
    late = FUSIONS.build("late", in_dims={"tab": 6, "acc": 3}, num_outputs=2)
    with pytest.raises(ValueError, match="outputs 2 logits, but num_outputs is 3"):
        MultimodalModel(enc, late, None, "classification", 3)
    late3 = LateFusion({"tab": 6, "acc": 3}, 3)
    decision = MultimodalModel(enc, late3, None, "classification", 3)
    assert decision.decision_level and decision.head is None
    with pytest.raises(ValueError, match=r"LateFusion predicts the logits itself; pass head=None"):
        MultimodalModel(enc, late3, nn.Linear(3, 3), "classification", 3)
    with pytest.raises(TypeError, match="must be a polymodal Fusion or DecisionFusion"):
        MultimodalModel(enc, nn.Linear(9, 3), None, "classification", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"modality_dropout\['tab'\] must be a probability"):
        MultimodalModel(enc, fusion, None, "classification", 3, modality_dropout={"tab": 1.0})
    with pytest.raises(ValueError, match="Unknown modality_dropout modality 'tba'"):
        MultimodalModel(enc, fusion, None, "classification", 3, modality_dropout={"tba": 0.1})
    one = build_fusion("early", {"tab": 6})
    with pytest.raises(ValueError, match="no effect on a model with one modality"):
        MultimodalModel({"tab": enc["tab"]}, one, None, "classification", 3, {"tab": 0.5})


def test_head_with_wrong_output_size_raises() -> None:
    enc = {"tab": TinyTabular(SPECS[0], 6)}
    fusion = build_fusion("early", {"tab": 6}, hidden_dim=8)
    model = MultimodalModel(enc, fusion, nn.Linear(8, 2), "classification", 3)
    with pytest.raises(
        ValueError, match=r"head produced logits of shape \(4, 2\), expected \(4, 3\)"
    ):
        model(batch_for())


# --------------------------------------------------------------------------- modality dropout


def _dropout_model(p: dict[str, float], seed: int = 0) -> MultimodalModel:
    cfg = ModelConfig(
        encoders={"acc": EncoderConfig("tiny_ts"), "tab": EncoderConfig("tiny_tab")},
        fusion=FusionConfig("late"),
        head=HeadConfig(),
        modality_dropout=p,
    )
    return build_model(cfg, schema(), seed=seed)


def _big_batch(n: int) -> Batch:
    g = torch.Generator().manual_seed(1)
    tab = torch.randn(n, 5, generator=g)
    acc = torch.randn(n, 2, 3, generator=g)
    present = torch.ones(n, dtype=torch.bool)
    return Batch(
        {
            "tab": ModalityBatch(tab, present.clone()),
            "acc": ModalityBatch(
                acc, present.clone(), torch.full((n,), 2), torch.ones(n, 2, dtype=torch.bool)
            ),
        },
        None,
        [str(i) for i in range(n)],
    )


def test_modality_dropout_rate_is_p() -> None:
    model = _dropout_model({"tab": 0.3})
    batch = _big_batch(4000)
    dropped = model.drop_modalities(batch)
    rate = 1 - dropped["tab"].present.float().mean().item()
    assert abs(rate - 0.3) < 0.03
    assert dropped["acc"].present.all()  # p = 0 for acc
    gone = ~dropped["tab"].present
    assert (dropped["tab"].values[gone] == 0).all()  # hidden exactly like missing data
    assert torch.equal(dropped["tab"].values[~gone], batch["tab"].values[~gone])


def test_modality_dropout_never_drops_all_modalities() -> None:
    model = _dropout_model({"tab": 0.9, "acc": 0.9})
    batch = _big_batch(2000)
    batch.modalities["acc"] = batch["acc"].with_present(torch.arange(2000) % 4 != 0)
    dropped = model.drop_modalities(batch)
    kept = dropped["tab"].present.long() + dropped["acc"].present.long()
    assert (kept >= 1).all()
    assert not (dropped["acc"].present & ~batch["acc"].present).any()  # never re-adds
    # both dropped is forbidden, so each is kept noticeably more often than 10%
    assert 0.1 < dropped["tab"].present.float().mean() < 0.7


def test_modality_dropout_by_group() -> None:
    """``groups``: the examples of a group lose a modality together, at rate p per group; a
    group never loses all of its modalities either."""
    model = _dropout_model({"tab": 0.3})
    groups = torch.arange(6000) // 3  # 2000 groups of 3 examples
    dropped = model.drop_modalities(_big_batch(6000), groups)
    kept = dropped["tab"].present.view(2000, 3)
    assert (kept == kept[:, :1]).all()  # one draw per group
    assert abs(1 - kept[:, 0].float().mean().item() - 0.3) < 0.035
    both = _dropout_model({"tab": 0.9, "acc": 0.9})
    dropped = both.drop_modalities(_big_batch(6000), groups)
    tab, acc = (dropped[m].present.view(2000, 3) for m in ("tab", "acc"))
    assert ((tab | acc).all()) and (tab == tab[:, :1]).all() and (acc == acc[:, :1]).all()
    with pytest.raises(ValueError, match=r"groups must be \(B,\) = \(8,\) integer group"):
        model.drop_modalities(_big_batch(8), torch.zeros(8))
    with pytest.raises(ValueError, match=r"integer group indices >= 0, .*\(min -1\)"):
        model.drop_modalities(_big_batch(2), torch.tensor([0, -1]))


def test_modality_dropout_only_in_training_and_seeded() -> None:
    batch = _big_batch(64)
    a, b, c = (
        _dropout_model({"tab": 0.5}),
        _dropout_model({"tab": 0.5}),
        _dropout_model({"tab": 0.5}, 1),
    )
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    a.train(), b.train(), c.train()
    out_a, out_b, out_c = a(batch), b(batch), c(batch)
    assert torch.equal(out_a.logits, out_b.logits)  # same seed, same drops
    assert not torch.equal(out_a.logits, out_c.logits)
    assert out_a.weights is not None and (out_a.weights[:, 1] == 0).any()  # tab dropped somewhere
    a.eval()
    out = a(batch)
    assert out.weights is not None and (out.weights > 0).all()  # nothing dropped in eval


# --------------------------------------------------------------------------- configs


def _full_config() -> ModelConfig:
    return ModelConfig(
        encoders={
            "tab": EncoderConfig("tiny_tab", {"dim": 6}),
            "acc": EncoderConfig("tiny_ts", {"dim": 3, "scale": 0.5}),
        },
        fusion=FusionConfig("late", {"combine": "learned"}),
        head=HeadConfig(),
        modality_dropout={"tab": 0.25},
    )


def test_config_dict_and_yaml_round_trip(tmp_path: Path) -> None:
    full = _full_config()
    acc = EncoderConfig("tiny_ts", {"dim": 3, "sizes": (3, 5), "opts": {"a": [1, None]}})
    assert acc.params["sizes"] == [3, 5]  # tuples stored as lists
    cfg = ModelConfig({**full.encoders, "acc": acc}, full.fusion, full.head, full.modality_dropout)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    text = cfg.to_yaml()
    assert ModelConfig.from_yaml(text) == cfg
    path = tmp_path / "model.yaml"
    cfg.to_yaml(path)
    assert ModelConfig.from_yaml(path) == cfg
    assert ModelConfig.from_yaml(str(path)) == cfg
    assert ModelConfig.from_dict({"encoders": {"tab": {"name": "tiny_tab"}}}) == ModelConfig(
        {"tab": EncoderConfig("tiny_tab")}
    )
    assert ModelConfig({"tab": EncoderConfig("x")}).fusion == FusionConfig("early", {})
    # a feature-level model with a non-default head, through YAML text
    early = ModelConfig(cfg.encoders, FusionConfig("early", {"hidden_dim": 8}), HeadConfig(5, 0.1))
    assert ModelConfig.from_yaml(early.to_yaml()) == early
    assert ModelConfig.from_yaml(early.to_yaml()).head == HeadConfig(hidden_dim=5, dropout=0.1)


def test_config_refuses_nan_and_inf_in_modality_dropout() -> None:
    d = _full_config().to_dict()
    finite = r"must be a finite number, got {}\. NaN and infinity are refused"
    for bad, shown in ((float("nan"), "nan"), (float("inf"), "inf")):
        with pytest.raises(
            ValueError, match=r"Config key 'modality_dropout\.tab' " + finite.format(shown)
        ):
            ModelConfig.from_dict({**d, "modality_dropout": {"tab": bad}})
        with pytest.raises(
            ValueError,
            match=r"Config key 'ModelConfig\.modality_dropout\.tab' " + finite.format(shown),
        ):
            ModelConfig(_full_config().encoders, modality_dropout={"tab": bad})
    text = _full_config().to_yaml().replace("tab: 0.25", "tab: .nan")
    assert ".nan" in text  # the YAML float NaN, not a string
    with pytest.raises(
        ValueError, match=r"'modality_dropout\.tab' must be a finite number, got nan"
    ):
        ModelConfig.from_yaml(text)


def test_config_unknown_keys_suggest() -> None:
    d = _full_config().to_dict()
    with pytest.raises(
        ValueError,
        match=r"Unknown config key 'fuson'\. Valid keys at the top level: encoders, fusion, "
        r"head, modality_dropout\. Did you mean 'fusion'\?",
    ):
        ModelConfig.from_dict({**d, "fuson": {}})
    with pytest.raises(
        ValueError,
        match=r"Unknown config key 'head\.hidden'\. Valid keys at 'head': hidden_dim, dropout\. "
        r"Did you mean 'hidden_dim'\?",
    ):
        ModelConfig.from_dict({**d, "head": {"hidden": 3}})
    with pytest.raises(
        ValueError,
        match=r"Unknown config key 'encoders\.tab\.parms'\. Valid keys at 'encoders\.tab': "
        r"name, params",
    ):
        ModelConfig.from_dict({**d, "encoders": {"tab": {"name": "tiny_tab", "parms": {}}}})
    with pytest.raises(
        ValueError, match=r"The config is missing the required key\(s\) 'encoders'; valid keys"
    ):
        ModelConfig.from_dict({"fusion": {}})
    with pytest.raises(
        ValueError,
        match=r"Config section 'encoders\.tab' is missing the required key\(s\) 'name'",
    ):
        ModelConfig.from_dict({"encoders": {"tab": {}}})


def test_config_wrong_types() -> None:
    d = _full_config().to_dict()
    with pytest.raises(ValueError, match=r"Config key 'head\.hidden_dim' must be int, got str '8'"):
        ModelConfig.from_dict({**d, "head": {"hidden_dim": "8"}})
    with pytest.raises(
        ValueError, match=r"Config key 'encoders\.tab\.params' must be dict\[str, Any\], got int 3"
    ):
        ModelConfig.from_dict({**d, "encoders": {"tab": {"name": "tiny_tab", "params": 3}}})
    with pytest.raises(ValueError, match=r"'fusion' must be a mapping of keys to values, got list"):
        ModelConfig.from_dict({**d, "fusion": ["late"]})
    with pytest.raises(
        ValueError, match=r"Config key 'modality_dropout\.tab' must be >= 0 and < 1, got 1\.0"
    ):
        ModelConfig.from_dict({**d, "modality_dropout": {"tab": 1.0}})
    with pytest.raises(
        ValueError, match=r"Config key 'HeadConfig\.dropout' must be >= 0 and < 1, got 2\.0"
    ):
        HeadConfig(dropout=2.0)
    with pytest.raises(ValueError, match=r"names modality 'tba'.*Did you mean 'tab'"):
        ModelConfig.from_dict({**d, "modality_dropout": {"tba": 0.1}})
    with pytest.raises(
        ValueError, match=r"Config key 'EncoderConfig\.params\.w' must hold plain data"
    ):
        EncoderConfig("tiny_tab", {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="must be a mapping of keys to values, got list"):
        ModelConfig.from_yaml("- a\n- b\n")


def test_build_model_checks_params_before_building() -> None:
    base = _full_config()
    s = schema()

    def with_encoder(mod: str, enc: EncoderConfig) -> ModelConfig:
        return ModelConfig({**base.encoders, mod: enc}, base.fusion, base.head)

    with pytest.raises(
        ValueError,
        match=r"encoder 'tiny_ts' for modality 'acc': unknown parameter 'dmi'; valid "
        r"parameters: dim, scale\. Did you mean 'dim'\?",
    ):
        build_model(with_encoder("acc", EncoderConfig("tiny_ts", {"dmi": 3})), s)
    with pytest.raises(ValueError, match="parameter 'spec' is set automatically"):
        build_model(with_encoder("acc", EncoderConfig("tiny_ts", {"spec": 3})), s)
    with pytest.raises(ValueError, match=r"Unknown encoder 'tiny_tb'.*Did you mean 'tiny_tab'"):
        build_model(with_encoder("tab", EncoderConfig("tiny_tb")), s)
    with pytest.raises(
        ValueError,
        match=r"modality 'img', which the data set's schema lacks; schema modalities: "
        r"tab, acc, caption",
    ):
        build_model(with_encoder("img", EncoderConfig("tiny_tab")), s)
    late = FusionConfig("late", {"combin": "mean"})
    with pytest.raises(ValueError, match=r"fusion 'late': unknown parameter 'combin'.*'combine'"):
        build_model(ModelConfig(base.encoders, late, base.head), s)
    with pytest.raises(ValueError, match="parameter 'in_dims' is set automatically"):
        build_model(ModelConfig(base.encoders, FusionConfig("early", {"in_dims": {}})), s)
    with pytest.raises(ValueError, match=r"Unknown fusion 'lat'.*Did you mean 'late'"):
        build_model(ModelConfig(base.encoders, FusionConfig("lat")), s)
    assert BUILT == []  # every error above came before any encoder was built


def test_build_model_refuses_an_encoder_of_the_wrong_kind_before_building() -> None:
    s = schema()
    # 'acc' (timeseries, checked first: sorted) is fine; 'tab' gets a timeseries encoder
    wrong_kind = ModelConfig({"acc": EncoderConfig("tiny_ts"), "tab": EncoderConfig("tiny_ts")})
    with pytest.raises(
        ValueError,
        match=r"encoder 'tiny_ts' for modality 'tab': it encodes 'timeseries' data, but "
        r"modality 'tab' is 'tabular'\. Pick an encoder for 'tabular'",
    ):
        build_model(wrong_kind, s)
    # a registered encoder of several kinds lists them all
    text_mlp = ModelConfig({"acc": EncoderConfig("tiny_ts"), "caption": EncoderConfig("mlp")})
    with pytest.raises(
        ValueError,
        match=r"encoder 'mlp' for modality 'caption': it encodes 'tabular' or 'features' data, "
        r"but modality 'caption' is 'text'",
    ):
        build_model(text_mlp, s)
    assert BUILT == []  # refused before 'acc''s encoder (valid) was built
    assert ENCODERS.get("tiny_ts").kinds == ("timeseries",)  # the check reads the registry
    right = ModelConfig({"acc": EncoderConfig("tiny_ts"), "tab": EncoderConfig("tiny_tab")})
    build_model(right, s)
    assert sorted(BUILT) == ["tiny_tab", "tiny_ts"]


@pytest.mark.parametrize(
    "head", [HeadConfig(8), HeadConfig(dropout=0.1)], ids=["hidden_dim", "dropout"]
)
def test_decision_level_fusion_with_a_head_fails_naming_head(head: HeadConfig) -> None:
    cfg = ModelConfig({"tab": EncoderConfig("tiny_tab")}, FusionConfig("late"), head)
    shown = r"\{'hidden_dim': 8, 'dropout': 0\.0\}" if head.hidden_dim else r"\{.*'dropout': 0\.1\}"
    with pytest.raises(
        ValueError,
        match=r"fusion 'late' is decision-level \(it outputs the logits\), so a head has "
        rf"nothing to do, but the config sets head={shown}\. Remove `head`",
    ):
        build_model(cfg, schema())
    assert BUILT == []  # checked before building
    default = build_model(ModelConfig(cfg.encoders, cfg.fusion), schema())
    assert default.head is None


def test_build_model_errors_after_building() -> None:
    cfg = ModelConfig({"tab": EncoderConfig("tiny_no_out_dim")})
    with pytest.raises(
        TypeError,
        match=r"encoder 'tiny_no_out_dim' for modality 'tab': built module has no positive int "
        r"`out_dim`, got 0",
    ):
        build_model(cfg, schema())
    assert BUILT == ["tiny_no_out_dim"]


def test_build_model_head_config() -> None:
    cfg = ModelConfig(
        {"tab": EncoderConfig("tiny_tab")},
        FusionConfig("early", {"hidden_dim": 8}),
        HeadConfig(hidden_dim=5, dropout=0.1),
    )
    model = build_model(cfg, schema())
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 5), (5, 3)]


def test_state_dict_round_trip_through_config_dict() -> None:
    """What the trainer does: save state_dict + cfg.to_dict(), rebuild, load."""
    cfg = _full_config()
    model = build_model(cfg, schema()).eval()
    saved = {"model": model.state_dict(), "config": cfg.to_dict()}
    torch.manual_seed(123)
    fresh = build_model(ModelConfig.from_dict(saved["config"]), schema()).eval()
    fresh.load_state_dict(saved["model"])
    batch = batch_for(missing={1: ("tab",)})
    torch.testing.assert_close(fresh(batch).logits, model(batch).logits)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_build_model_with_registered_encoders_trains_a_step(fusion: str) -> None:
    cfg = ModelConfig(
        encoders={
            "tab": EncoderConfig("mlp", {"dim": 8, "num_layers": 1}),
            "acc": EncoderConfig("ts_cnn", {"dim": 8, "channels": 8, "num_layers": 1}),
            "caption": EncoderConfig(
                "text_transformer", {"dim": 8, "num_layers": 1, "num_heads": 2}
            ),
        },
        fusion=FusionConfig(fusion),
        modality_dropout={"caption": 0.5},
    )
    model = build_model(cfg, schema()).train()
    batch = batch_for(missing={0: ("tab",), 2: ("caption", "acc")})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(batch).logits, batch.target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert model.predict(batch).shape == (4,)
