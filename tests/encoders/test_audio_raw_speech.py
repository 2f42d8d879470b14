"""Issue 13 item 8: audio encoders that learn from raw speech in a few epochs.

The earlier audio_cnn gave every RAVDESS clip nearly the same output at initialisation
(mean pairwise cosine 0.99), floored log-mel at 1e-6 of full-scale power (over half of a
RAVDESS clip's log-mel values sat at that one floor), and decoded and transformed every clip
again each epoch.  These tests pin the relative floor, the per-utterance normalisation, the
spread of outputs at init, the log-mel cache, and that a few steps on real clips learn.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from polymodal.data import collate
from polymodal.data.cache import FeatureCache, content_key
from polymodal.data.datasets import load_dataset
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.encoders.audio import AudioEncoder
from polymodal.layers.melspec import LogMelSpectrogram

SR = 8000
AUDIO = ModalitySpec("speech", ModalityKind.AUDIO, shape=(), sample_rate=SR)
TINY = {"dim": 8, "channels": (4, 4), "n_mels": 16}


def waves_batch(*waves: torch.Tensor) -> ModalityBatch:
    n = max(len(w) for w in waves)
    values = torch.zeros(len(waves), n)
    for i, w in enumerate(waves):
        values[i, : len(w)] = w
    lengths = torch.tensor([len(w) for w in waves])
    return ModalityBatch(values, torch.ones(len(waves), dtype=torch.bool), lengths)


def speechlike(seconds: float, seed: int) -> torch.Tensor:
    """Noise bursts between digital silence: the shape of a RAVDESS clip."""
    g = torch.Generator().manual_seed(seed)
    n = int(SR * seconds)
    w = torch.zeros(n)
    lo, hi = n // 4, 3 * n // 4
    w[lo:hi] = torch.randn(hi - lo, generator=g) * 0.05
    return w


@pytest.fixture(scope="module")
def ravdess_batch(data_root: Path) -> tuple[ModalitySpec, ModalityBatch, torch.Tensor]:
    ds = load_dataset("ravdess_speech", split="test", root=data_root)
    samples = [ds[i] for i in range(0, 240, 30)]  # 8 clips, 4 actors, several emotions
    return (
        ds.schema.modalities[0],
        collate(samples, ds.schema)["audio"],
        torch.tensor([int(s.target) for s in samples]),
    )


def test_top_db_floors_each_clip_relative_to_its_own_peak() -> None:
    w = speechlike(1.0, 0)
    plain = LogMelSpectrogram(SR, n_mels=16, log_floor=1e-12)(w[None]).features[0]
    mel = LogMelSpectrogram(SR, n_mels=16, log_floor=1e-12, top_db=40.0)
    floored = mel(w[None]).features[0]
    floor = float(plain.max()) - 40.0 * math.log(10.0) / 10.0
    assert float(floored.min()) == pytest.approx(floor, abs=1e-4)
    assert (plain < floor).float().mean() > 0.2  # the silence was far below it
    kept = plain >= floor
    torch.testing.assert_close(floored[kept], plain[kept])
    # Per clip: a quiet clip padded next to a loud one is floored by its own peak.
    both = mel(waves_batch(20.0 * speechlike(1.2, 1), w).values, torch.tensor([9600, 8000]))
    n = floored.shape[0]
    torch.testing.assert_close(both.features[1, :n], floored, atol=1e-4, rtol=1e-4)
    assert (both.features[1, n:] == 0).all()
    with pytest.raises(ValueError, match=r"'top_db' parameter of LogMelSpectrogram.*got -3"):
        LogMelSpectrogram(SR, top_db=-3)


def test_front_end_is_zero_mean_unit_variance_per_utterance() -> None:
    enc = build_encoder("audio_cnn", spec=AUDIO, **TINY)
    assert isinstance(enc, AudioEncoder)
    batch = waves_batch(speechlike(1.0, 0), 30.0 * speechlike(0.5, 1))
    assert batch.lengths is not None
    feats, mask = enc.features(batch.values, batch.lengths)
    for b in range(2):
        valid = feats[b][mask[b]]  # (F_b, n_mels)
        assert abs(float(valid.mean())) < 1e-4
        assert float(valid.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
        assert (feats[b][~mask[b]] == 0).all()


def _mean_pairwise_cosine(x: torch.Tensor) -> float:
    c = torch.nn.functional.cosine_similarity(x[:, None], x[None], dim=-1)  # (B, B)
    n = len(x)
    return float((c.sum() - n) / (n * n - n))


@pytest.mark.parametrize("seed", [0, 1])
def test_outputs_differ_across_real_clips_at_init(
    ravdess_batch: tuple[ModalitySpec, ModalityBatch, torch.Tensor], seed: int
) -> None:
    # audio_cnn's defaults (mean over mel rows, mean pooling, 1e-6 floor) map 8 RAVDESS
    # clips to vectors with mean pairwise cosine above 0.99; the options of issue 13 must
    # keep them apart.
    spec, batch, _ = ravdess_batch
    torch.manual_seed(seed)
    new = build_encoder("audio_cnn", spec=spec, freq_pool="flatten", pool="stats", top_db=80).eval()
    torch.manual_seed(seed)
    old = build_encoder("audio_cnn", spec=spec)
    with torch.no_grad():
        new_cos = _mean_pairwise_cosine(new(batch).pooled)
        old_cos = _mean_pairwise_cosine(old.eval()(batch).pooled)
    assert old_cos > 0.985  # what the test guards against
    assert new_cos < 0.985


def test_log_mel_cache_returns_identical_frames_and_is_bounded() -> None:
    enc = build_encoder("audio_cnn", spec=AUDIO, cache_mb=1.0, **TINY)
    assert isinstance(enc, AudioEncoder)
    a, b, c = speechlike(1.0, 0), speechlike(0.6, 1), speechlike(0.8, 2)
    first = waves_batch(a, b)
    assert first.lengths is not None
    fresh = enc.features(first.values, first.lengths)
    cold = enc.cached_features(first.values, first.lengths)
    assert enc.cache.misses == 2 and len(enc.cache) == 2
    warm = enc.cached_features(first.values, first.lengths)
    assert enc.cache.hits == 2
    assert torch.equal(warm.features, cold.features) and torch.equal(warm.mask, cold.mask)
    torch.testing.assert_close(cold.features, fresh.features, atol=1e-5, rtol=1e-5)
    # The same clip in another batch, at another position and padding: read from the cache.
    other = waves_batch(c, b)
    assert other.lengths is not None
    out = enc.cached_features(other.values, other.lengths)
    assert enc.cache.hits == 3
    n = int(out.mask[1].sum())
    assert torch.equal(out.features[1, :n], warm.features[1, :n])
    assert (out.features[1, n:] == 0).all()
    # Gradients through the waveform bypass the cache.
    w = first.values.clone().requires_grad_(True)
    enc.cached_features(w, first.lengths).features.sum().backward()
    assert w.grad is not None
    # Bounded in bytes, least recently used out first.
    cache = FeatureCache(max_bytes=3 * 400)
    for i in range(5):
        cache.put(str(i), torch.full((100,), float(i)))  # 400 bytes each
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 3 and "0" not in cache and "1" not in cache
    assert cache.get("4") is not None and cache.get("0") is None
    cache.put("big", torch.zeros(1000))  # larger than the bound: not stored
    assert "big" not in cache and cache.nbytes == 1200
    assert content_key(a) == content_key(a.clone()) != content_key(a * 1.001)
    assert build_encoder("audio_cnn", spec=AUDIO, cache_mb=0, **TINY).cache.max_bytes == 0
    with pytest.raises(ValueError, match=r"'cache_mb' parameter of audio_gru.*got -1"):
        build_encoder("audio_gru", spec=AUDIO, cache_mb=-1)
    with pytest.raises(ValueError, match=r"'pool' parameter of audio_cnn.*got 'max'"):
        build_encoder("audio_cnn", spec=AUDIO, pool="max")


def test_a_few_steps_on_real_clips_lower_the_loss(
    ravdess_batch: tuple[ModalitySpec, ModalityBatch, torch.Tensor],
) -> None:
    spec, batch, targets = ravdess_batch
    torch.manual_seed(0)
    enc = build_encoder(
        "audio_cnn",
        spec=spec,
        dim=16,
        channels=(8, 8, 16),
        n_mels=32,
        pool="stats",
        top_db=80,
        freq_pool="flatten",
    )
    head = torch.nn.Linear(16, 8)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(head(enc(batch).pooled), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert isinstance(enc, AudioEncoder) and enc.cache.hits >= 11 * len(targets)
    assert losses[-1] < 0.5 * losses[0]


def test_audio_cnn_init_option() -> None:
    from polymodal.data.modality import ModalityKind, ModalitySpec
    from polymodal.encoders.audio import audio_cnn

    spec = ModalitySpec("audio", ModalityKind.AUDIO, shape=(), sample_rate=16000.0)
    torch.manual_seed(0)
    kaiming = audio_cnn(spec, channels=(8, 8), init="kaiming")
    torch.manual_seed(0)
    default = audio_cnn(spec, channels=(8, 8))
    convs_k = [m for m in kaiming.modules() if isinstance(m, torch.nn.Conv2d)]
    convs_d = [m for m in default.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(float(c.bias.abs().sum()) == 0.0 for c in convs_k)  # type: ignore[union-attr]
    assert all(float(c.bias.abs().sum()) > 0.0 for c in convs_d)  # type: ignore[union-attr]
    # fan-out Kaiming: std sqrt(2 / (out_channels * 9)) for the second 8 -> 8 conv
    assert float(convs_k[1].weight.std()) == pytest.approx((2 / 72) ** 0.5, rel=0.25)
    with pytest.raises(ValueError, match="'init' parameter of audio_cnn must be"):
        audio_cnn(spec, init="xavier")
