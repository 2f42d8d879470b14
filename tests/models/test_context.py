"""Context models: the video-level data view, ContextModel (GRU/transformer) and its config,
on tiny synthetic videos (and the real MOSI ordering).  Training a context model (the loss
and the loop) is tested in ``tests/training/test_context_task.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from polymodal.data import ModalityKind, ModalitySpec, Sample, Schema, TargetSpec
from polymodal.data.context import IGNORE_INDEX, VideoDataset, pad_utterances
from polymodal.data.dataset import MultimodalDataset
from polymodal.fusion import FUSIONS
from polymodal.losses import sequence_loss
from polymodal.models import EncoderConfig, FusionConfig, ModelConfig, build_model
from polymodal.models.context import ContextConfig, ContextModel, sinusoidal_positions

SCHEMA = Schema(
    (
        ModalitySpec("a", ModalityKind.FEATURES, shape=(3,)),
        ModalitySpec("b", ModalityKind.FEATURES, shape=(2,)),
    ),
    TargetSpec("classification", 2, ("neg", "pos")),
)
# video -> utterances; stored shuffled and with string-sorted numbers (1, 10, 2, ...).
LENGTHS = {"v0": 3, "v1": 1, "v2": 11, "v3": 2, "v4": 5, "v5": 4}


class ToyVideos(MultimodalDataset):
    """Utterances ``<video>_<n>`` of :data:`LENGTHS`, stored out of spoken order."""

    name = "toy_videos"
    schema = SCHEMA

    def __init__(self, seed: int = 0, with_videos: bool = True) -> None:
        g = torch.Generator().manual_seed(seed)
        rows = [(v, n) for v, k in LENGTHS.items() for n in range(1, k + 1)]
        rows.sort(key=lambda r: (r[0], str(r[1])))  # string order: _1, _10, _11, _2
        self.rows = rows
        self.a = torch.randn(len(rows), 3, generator=g)
        self.b = torch.randn(len(rows), 2, generator=g)
        self.y = (self.a[:, 0] > 0).long()
        if not with_videos:
            self.videos = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Sample:
        v, n = self.rows[i]
        return Sample(f"{v}_{n}", {"a": self.a[i], "b": self.b[i]}, int(self.y[i]))

    def targets(self) -> list[Any]:
        return self.y.tolist()

    def groups(self) -> list[str]:
        return [v for v, _ in self.rows]

    def videos(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, (v, _) in enumerate(self.rows):
            out.setdefault(v, []).append(i)
        for idx in out.values():
            idx.sort(key=lambda i: self.rows[i][1])
        return out


def utterance_config(fusion: str = "early", params: dict[str, Any] | None = None) -> ModelConfig:
    enc = EncoderConfig("mlp", {"dim": 8})
    return ModelConfig({"a": enc, "b": enc}, FusionConfig(fusion, params or {}))


def utterance_model(fusion: str = "early", params: dict[str, Any] | None = None) -> Any:
    return build_model(utterance_config(fusion, params), SCHEMA)


def context_model(context: str = "gru", **kw: Any) -> ContextModel:
    torch.manual_seed(0)
    kw.setdefault("hidden_dim", 8)
    kw.setdefault("num_heads", 2)
    return ContextModel(utterance_model(), context, **kw)


# --------------------------------------------------------------------------- data view


def test_pad_utterances_lays_out_videos() -> None:
    flat = torch.arange(6.0)[:, None]  # (N=6, 1)
    out = pad_utterances(flat, torch.tensor([2, 3, 1]), fill=-1)
    assert out.squeeze(-1).tolist() == [[0, 1, -1], [2, 3, 4], [5, -1, -1]]
    with pytest.raises(ValueError, match="lengths sum to 5"):
        pad_utterances(flat, torch.tensor([2, 3]))


def test_video_view_groups_by_video_in_numeric_order() -> None:
    ds = VideoDataset(ToyVideos())
    assert ds.videos == sorted(LENGTHS)
    assert len(ds) == len(LENGTHS) and ds.num_utterances == sum(LENGTHS.values())
    for video, idx in zip(ds.videos, ds, strict=True):
        ids = [ds.base[i].id for i in idx]
        assert ids == [f"{video}_{n}" for n in range(1, LENGTHS[video] + 1)]


def test_video_view_of_a_subset_keeps_the_base_order() -> None:
    """A subset (e.g. validation carved from train) keeps its base's ``videos()`` order."""
    base = ToyVideos()
    keep = [i for i, (v, _) in enumerate(base.rows) if v in ("v2", "v4")][::-1]
    sub = VideoDataset(base.subset(keep))
    assert sub.videos == ["v2", "v4"]
    for video, idx in zip(sub.videos, sub, strict=True):
        ids = [sub.base[i].id for i in idx]
        assert ids == [f"{video}_{n}" for n in range(1, LENGTHS[video] + 1)]
    assert ToyVideos(with_videos=False).subset([0, 1]).videos() is None


def test_video_view_without_videos_keeps_base_order() -> None:
    base = ToyVideos(with_videos=False)
    ds = VideoDataset(base)
    assert ds[ds.videos.index("v2")] == [i for i, (v, _) in enumerate(base.rows) if v == "v2"]


def test_real_mosi_video_order(data_root: Path) -> None:
    from polymodal.data.datasets.mosi import MOSI

    mosi = MOSI(data_root / "mosi", "test", modalities=("audio",))
    ds = VideoDataset(mosi)
    assert len(ds) == 31 and ds.num_utterances == len(mosi) == 752
    for idx in ds:
        numbers = [mosi[i].meta["utterance"] for i in idx]
        assert numbers == sorted(numbers) and len({mosi[i].meta["video"] for i in idx}) == 1


def test_split_videos_keeps_videos_apart() -> None:
    ds = VideoDataset(ToyVideos())
    train, val = ds.split_videos(0.34, seed=3)
    assert not set(train.videos) & set(val.videos)
    assert sorted(train.videos + val.videos) == ds.videos
    assert train.num_utterances + val.num_utterances == ds.num_utterances
    sub = ds.subset([2])
    assert sub.videos == ["v2"] and sub[0] == ds[2]


def test_batch_pads_targets_with_ignore_index() -> None:
    ds = VideoDataset(ToyVideos())
    batch = ds.batch([1, 0])  # v1 (1 utterance), v0 (3)
    assert batch.videos == ["v1", "v0"]
    assert batch.lengths.tolist() == [1, 3]
    assert batch.mask.tolist() == [[True, False, False], [True, True, True]]
    assert batch.utterances.ids == ["v1_1", "v0_1", "v0_2", "v0_3"]
    assert batch.target is not None and batch.target[0, 1:].tolist() == [IGNORE_INDEX] * 2
    assert batch.target[batch.mask].tolist() == batch.utterances.target.tolist()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="no videos"):
        ds.batch([])


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("context", ["gru", "transformer"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_shapes(context: str, num_layers: int) -> None:
    model = context_model(context, num_layers=num_layers)
    batch = VideoDataset(ToyVideos()).batch([0, 1, 2])
    out = model(batch)
    assert out.logits.shape == (3, 11, 2) and out.utterance_logits.shape == (3, 11, 2)
    assert out.mask.tolist() == batch.mask.tolist()
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("context", ["gru", "transformer"])
@pytest.mark.parametrize("train", [False, True])
def test_single_utterance_video(context: str, train: bool) -> None:
    model = context_model(context).train(train)
    out = model(VideoDataset(ToyVideos()).batch([1]))  # v1 has one utterance
    assert out.logits.shape == (1, 1, 2) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("context", ["gru", "transformer"])
def test_padding_and_other_videos_do_not_change_outputs(context: str) -> None:
    model = context_model(context).eval()
    ds = VideoDataset(ToyVideos())
    with torch.no_grad():
        alone = model(ds.batch([0])).logits[0]  # v0, 3 utterances, no padding
        mixed = model(ds.batch([2, 0, 1])).logits[1, :3]  # v0 padded to 11 steps
        again = model(ds.batch([4, 0])).logits[1, :3]
    torch.testing.assert_close(mixed, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("context", ["gru", "transformer"])
def test_context_is_used(context: str) -> None:
    """Changing another utterance of the same video changes an utterance's output."""
    model = context_model(context).eval()
    base = ToyVideos()
    ds = VideoDataset(base)
    first, last = ds[0][0], ds[0][-1]
    with torch.no_grad():
        before = model(ds.batch([0])).logits[0, 0].clone()
        base.a[last] += 5.0
        after = model(ds.batch([0])).logits[0, 0]
    assert first != last and not torch.allclose(before, after)


@pytest.mark.parametrize("context", ["gru", "transformer"])
def test_gradients_reach_utterance_model(context: str) -> None:
    model = context_model(context)
    batch = VideoDataset(ToyVideos()).batch([0, 2])
    assert batch.target is not None
    sequence_loss(model(batch).logits, batch.target).backward()
    used = [
        (n, p)
        for n, p in model.named_parameters()
        if not n.startswith("utterance_model.head.")  # the utterance head only feeds inspection
    ]
    no_grad = [n for n, p in used if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad
    assert any(n.startswith("utterance_model.encoders.") for n, _ in used)


SMALL = {
    "mult": {"hidden_dim": 8, "num_heads": 2, "num_layers": 1},
    "coattention": {"hidden_dim": 8, "num_heads": 2, "num_layers": 1},
    "bottleneck": {"hidden_dim": 8, "num_heads": 2, "num_layers": 1, "num_bottlenecks": 2},
}
FEATURE_LEVEL = [n for n in FUSIONS.names() if not utterance_model(n, SMALL.get(n)).decision_level]
DECISION_LEVEL = [n for n in FUSIONS.names() if n not in FEATURE_LEVEL]


def test_fusion_lists() -> None:
    assert {"early", "tensor", "gmu", "mult", "graph"} <= set(FEATURE_LEVEL)
    assert {"late", "hybrid"} <= set(DECISION_LEVEL)
    # what the built models say agrees with what the registry declares
    assert [e.name for e in FUSIONS if "decision" in e.kinds] == DECISION_LEVEL


@pytest.mark.parametrize("fusion", FEATURE_LEVEL)
def test_every_feature_level_fusion(fusion: str) -> None:
    torch.manual_seed(0)
    model = ContextModel(utterance_model(fusion, SMALL.get(fusion)), "gru", hidden_dim=4)
    batch = VideoDataset(ToyVideos()).batch([3, 1])
    out = model(batch)
    assert out.logits.shape == (2, 2, 2) and torch.isfinite(out.logits).all()
    assert batch.target is not None
    sequence_loss(out.logits, batch.target).backward()


@pytest.mark.parametrize("fusion", DECISION_LEVEL)
def test_decision_level_fusion_rejected(fusion: str) -> None:
    with pytest.raises(ValueError, match="decision-level"):
        ContextModel(utterance_model(fusion), "gru")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="context"):
        ContextModel(utterance_model(), "lstm")
    with pytest.raises(ValueError, match="hidden_dim=6 must be divisible by num_heads=4"):
        ContextModel(utterance_model(), "transformer", hidden_dim=6, num_heads=4)
    with pytest.raises(ValueError, match="num_layers must be an int >= 1, got 0"):
        ContextModel(utterance_model(), "gru", num_layers=0)
    with pytest.raises(TypeError, match="MultimodalModel"):
        ContextModel(torch.nn.Linear(2, 2), "gru")  # type: ignore[arg-type]


def test_config_builds_the_model_it_describes() -> None:
    """A run's ``context`` section is ContextModel's keyword arguments, checked by key."""
    cfg = ContextConfig.from_dict({"context": "transformer", "hidden_dim": 8, "num_heads": 2})
    assert cfg.to_dict() == {
        "context": "transformer",
        "hidden_dim": 8,
        "num_layers": 1,
        "dropout": 0.1,
        "num_heads": 2,
        "modality_dropout": "utterance",
    }
    assert ContextConfig.from_yaml(cfg.to_yaml()) == cfg
    model = ContextModel(utterance_model(), **cfg.to_dict())
    assert model.context == "transformer" and model.hidden_dim == 8
    assert model.encoder is not None and model.encoder.layers[0].self_attn.num_heads == 2
    with pytest.raises(
        ValueError, match=r"Unknown config key 'hidden'\..*Did you mean 'hidden_dim'"
    ):
        ContextConfig.from_dict({"hidden": 8})
    with pytest.raises(ValueError, match=r"Config key 'num_layers' must be >= 1, got 0"):
        ContextConfig.from_dict({"num_layers": 0})
    with pytest.raises(
        ValueError, match=r"Config key 'context' must be one of \['gru', 'transformer'\]"
    ):
        ContextConfig.from_dict({"context": "lstm"})
    with pytest.raises(ValueError, match="hidden_dim=6 must be divisible by num_heads=4"):
        ContextConfig(context="transformer", hidden_dim=6, num_heads=4)
    with pytest.raises(ValueError, match=r"'ContextConfig\.dropout' must be a finite number"):
        ContextConfig(dropout=float("nan"))


def test_sinusoidal_positions_odd_dim() -> None:
    pe = sinusoidal_positions(4, 5)
    assert pe.shape == (4, 5) and pe[0, 1] == 1.0


def test_modality_dropout_by_video() -> None:
    """``modality_dropout="video"``: in training, every utterance of a video loses a
    modality together (the default hides each utterance's on its own); eval hides none."""
    seen: dict[str, list[torch.Tensor]] = {"utterance": [], "video": []}
    videos = VideoDataset(ToyVideos())
    batch = videos.batch(list(range(len(videos))))
    for unit in seen:
        torch.manual_seed(0)
        um = build_model(
            ModelConfig(
                {"a": EncoderConfig("mlp", {"dim": 8}), "b": EncoderConfig("mlp", {"dim": 8})},
                FusionConfig("early", {}),
                modality_dropout={"a": 0.5, "b": 0.5},
            ),
            SCHEMA,
        )
        model = ContextModel(um, hidden_dim=8, modality_dropout=unit).train()
        calls: list[torch.Tensor] = []
        drop = um.drop_modalities

        def spy(b: Any, groups: Any = None, drop: Any = drop, calls: Any = calls) -> Any:
            out = drop(b, groups)
            calls.append(torch.stack([out["a"].present, out["b"].present], dim=1))
            return out

        um.drop_modalities = spy  # type: ignore[method-assign]
        for _ in range(20):
            model(batch)
        seen[unit] = calls
    starts = torch.cumsum(batch.lengths, 0) - batch.lengths
    for unit, calls in seen.items():
        kept = torch.stack(calls)  # (20, N, 2): each utterance's modalities after dropout
        per_video = [kept[:, s : s + n] for s, n in zip(starts, batch.lengths, strict=True)]
        uniform = all(bool((v == v[:, :1]).all()) for v in per_video)
        assert uniform == (unit == "video"), unit
        assert kept.any(-1).all()  # never both hidden
        assert not kept.all()  # some modality was hidden somewhere
    model.eval()
    calls.clear()
    model(batch)
    assert not calls  # no dropout in eval
    with pytest.raises(ValueError, match="Unknown modality_dropout 'recording'"):
        ContextModel(utterance_model(), modality_dropout="recording")
    assert ContextConfig(modality_dropout="video").modality_dropout == "video"
