"""``audio_logmel``: a fixed-size, parameter-free log-mel vector of a short clip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from polymodal.data.decode import decode_audio
from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import ENCODERS, build_encoder
from polymodal.encoders.audio_logmel import LogMelVector
from polymodal.joint.features import cached_features

SR = 8000
AUDIO = ModalitySpec("speech", ModalityKind.AUDIO, shape=(), sample_rate=SR)


def waves_batch(*waves: torch.Tensor) -> ModalityBatch:
    """Zero-padded (B, T) waveforms with their lengths."""
    n = max(len(w) for w in waves)
    values = torch.zeros(len(waves), n)
    for i, w in enumerate(waves):
        values[i, : len(w)] = w
    lengths = torch.tensor([len(w) for w in waves])
    return ModalityBatch(values, torch.ones(len(waves), dtype=torch.bool), lengths)


def chirp(seconds: float = 0.3, f0: float = 300.0, f1: float = 1500.0) -> torch.Tensor:
    """A rising tone: a clip whose frames differ over time."""
    t = torch.arange(int(SR * seconds)) / SR
    return 0.3 * torch.sin(2 * math.pi * (f0 + (f1 - f0) * t / (2 * seconds)) * t)


def test_registered_as_an_audio_encoder() -> None:
    entry = ENCODERS.get("audio_logmel")
    assert entry.kinds == ("audio",)
    assert isinstance(build_encoder("audio_logmel", AUDIO), LogMelVector)


@pytest.mark.parametrize(("n_mels", "frames"), [(40, 32), (16, 8)])
def test_output_shape_is_n_mels_times_frames_plus_two(n_mels: int, frames: int) -> None:
    enc = build_encoder("audio_logmel", AUDIO, n_mels=n_mels, frames=frames)
    assert enc.out_dim == n_mels * (frames + 2)
    out = enc(waves_batch(chirp(0.3), chirp(0.8), chirp(0.1)))
    assert out.pooled.shape == (3, n_mels * (frames + 2))
    assert out.sequence.shape == (3, 1, enc.out_dim) and out.mask.shape == (3, 1)
    assert torch.isfinite(out.pooled).all() and out.mask.all()
    # the layout: n_mels bands x frames, then band means, then band stds (>= 0)
    assert (out.pooled[:, n_mels * frames + n_mels :] >= 0).all()


def test_has_no_parameters_so_it_is_frozen_and_its_features_cache(tmp_path: Path) -> None:
    enc = build_encoder("audio_logmel", AUDIO)
    assert list(enc.parameters()) == []
    waves = [chirp(0.2), chirp(0.5)]
    feats = cached_features(
        enc,
        lambda pos: waves_batch(*[waves[i] for i in pos]),
        ["a", "b"],
        dataset="toy",
        split="train",
        modality="speech",
        encoder_name="audio_logmel",
        root=tmp_path,
    )
    assert feats.features.shape == (2, enc.out_dim) and not feats.hit


def test_dim_adds_a_trainable_projection() -> None:
    enc = build_encoder("audio_logmel", AUDIO, dim=8)
    assert enc.out_dim == 8
    assert [n for n, p in enc.named_parameters() if p.requires_grad] == [
        "proj.weight",
        "proj.bias",
    ]


def test_same_vector_alone_or_padded_in_a_batch(data_root: Path) -> None:
    rec = data_root / "fsdd" / "recordings"
    short, long = (
        decode_audio(rec / f, sample_rate=SR) for f in ("7_theo_3.wav", "0_george_0.wav")
    )
    enc = build_encoder("audio_logmel", AUDIO)
    both = enc(waves_batch(short, long)).pooled  # short padded to long's length
    alone = enc(waves_batch(short)).pooled
    torch.testing.assert_close(both[:1], alone, rtol=1e-5, atol=1e-5)
    # padding with noise instead of zeros changes nothing either: only valid samples count
    noisy = waves_batch(short, long)
    assert isinstance(noisy.values, torch.Tensor)
    noisy.values[0, len(short) :] = torch.randn(len(long) - len(short))
    torch.testing.assert_close(enc(noisy).pooled[:1], alone, rtol=1e-5, atol=1e-5)


def test_leading_and_trailing_silence_is_trimmed(data_root: Path) -> None:
    word = decode_audio(data_root / "fsdd" / "recordings" / "7_theo_3.wav", sample_rate=SR)
    # 0.3 s of digital silence either side: a whole number of 10 ms hops, so the word's
    # frames are the same frames in both clips
    silence = torch.zeros(int(0.3 * SR))
    padded = torch.cat([silence, word, silence])
    enc = build_encoder("audio_logmel", AUDIO)
    out = enc(waves_batch(word, padded)).pooled
    torch.testing.assert_close(out[1], out[0], rtol=1e-4, atol=1e-4)
    # without trimming (a huge threshold keeps every frame) the silence shows
    keep_all = build_encoder("audio_logmel", AUDIO, trim=1e6)(waves_batch(word, padded)).pooled
    assert (keep_all[1] - keep_all[0]).abs().max() > 1.0


def test_absent_and_empty_clips_give_zeros_and_leave_the_others_alone() -> None:
    enc = build_encoder("audio_logmel", AUDIO)
    batch = waves_batch(chirp(0.3), chirp(0.5))
    full = enc(batch).pooled
    hidden = batch.with_present(torch.tensor([False, True]))
    out = enc(hidden)
    assert (out.pooled[0] == 0).all() and not out.mask[0, 0]
    torch.testing.assert_close(out.pooled[1], full[1])
    assert isinstance(batch.values, torch.Tensor)
    empty = ModalityBatch(batch.values, batch.present, torch.tensor([0, batch.values.shape[1]]))
    assert (enc(empty).pooled[0] == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trim": 0.0}, "trim must be a positive"),
        ({"frames": 0}, "frames must be a positive int"),
        ({"n_mels": 2.5}, "n_mels must be a positive int"),
        ({"dim": 0}, "dim must be a positive int"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=rf"audio_logmel: {match}"):
        build_encoder("audio_logmel", AUDIO, **kwargs)


def test_needs_a_sample_rate() -> None:
    spec = ModalitySpec("speech", ModalityKind.AUDIO, shape=())
    with pytest.raises(ValueError, match=r"audio_logmel needs the audio sample rate"):
        build_encoder("audio_logmel", spec)
    assert build_encoder("audio_logmel", spec, sample_rate=16000.0).out_dim == 40 * 34
