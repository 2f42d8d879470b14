"""Regression tests for the audio_cnn fixes found on av_digits (FSDD).

Each test fails on the earlier encoder: per-band CMVN erased a clip's average spectrum, the
CNN saw 70 ms of audio per output frame (then averaged the frames: a bag of short frames),
and a LayerNorm over channels at every position rescaled quiet patches to the size of loud
ones.
"""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.encoders.audio import MaskedMapNorm, MelConv2d, downsample_mask
from polymodal.layers.melspec import masked_standardize, masked_utterance_standardize

SR = 8000
AUDIO = ModalitySpec("speech", ModalityKind.AUDIO, shape=(), sample_rate=SR)


def waves_batch(*waves: torch.Tensor) -> ModalityBatch:
    n = max(len(w) for w in waves)
    values = torch.zeros(len(waves), n)
    for i, w in enumerate(waves):
        values[i, : len(w)] = w
    lengths = torch.tensor([len(w) for w in waves])
    return ModalityBatch(values, torch.ones(len(waves), dtype=torch.bool), lengths)


def tone(freq: float, seconds: float = 0.4, amp: float = 0.1) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return amp * torch.sin(2 * math.pi * freq * t)


def tiny_cnn(**kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    params: dict[str, object] = {"dim": 8, "channels": (4, 4, 4, 4), "n_mels": 16}
    return build_encoder("audio_cnn", spec=AUDIO, **{**params, **kw}).eval()


def test_default_normalisation_keeps_the_average_spectrum() -> None:
    # Two clips whose log-mel frames differ by a per-band offset (a different average
    # spectrum: another vowel, another word) become identical under per-band CMVN; the
    # default utterance-level standardisation keeps them apart and removes only gain.
    assert tiny_cnn().cmvn == "utterance"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 20, 16, generator=g)
    shape = torch.linspace(-2.0, 2.0, 16)  # (n_mels,) a tilt of the spectrum
    mask = torch.ones(1, 20, dtype=torch.bool)
    torch.testing.assert_close(masked_standardize(x + shape, mask), masked_standardize(x, mask))
    kept = masked_utterance_standardize(x + shape, mask) - masked_utterance_standardize(x, mask)
    assert kept.abs().mean() > 0.5
    louder = masked_utterance_standardize(x + 3.0, mask)  # a constant offset: a gain
    torch.testing.assert_close(louder, masked_utterance_standardize(x, mask))


def test_default_encoder_ignores_gain() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3000, generator=g) * 0.05  # broadband: no band at the log floor
    with torch.no_grad():
        out = tiny_cnn()(waves_batch(w, 20.0 * w)).pooled
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=1e-4)


def test_utterance_standardize_uses_one_mean_and_std_over_valid_frames() -> None:
    x = torch.randn(2, 6, 3) * 4 + 2
    mask = torch.tensor([[True] * 4 + [False] * 2, [False] * 6])
    y = masked_utterance_standardize(x, mask)
    valid = y[0, :4]
    assert abs(float(valid.mean())) < 1e-5
    assert abs(float(valid.std(unbiased=False)) - 1.0) < 1e-3
    # The band means are not forced to zero: the spectral shape survives.
    expected = (x[0, :4].mean(0) - x[0, :4].mean()) / x[0, :4].std(unbiased=False)
    torch.testing.assert_close(valid.mean(0), expected, atol=1e-3, rtol=1e-3)
    assert (y[0, 4:] == 0).all() and (y[1] == 0).all()


def test_an_output_frame_sees_a_syllable_not_a_frame() -> None:
    # Receptive field in time: the gradient of one output frame with respect to the
    # waveform must reach >= 0.25 s of it (the old stack reached 7 frames: ~0.1 s).
    enc = tiny_cnn()
    w = (torch.randn(SR) * 0.1).requires_grad_(True)
    batch = ModalityBatch(w[None], torch.ones(1, dtype=torch.bool), torch.tensor([SR]))
    out = enc(batch)
    middle = out.sequence.shape[1] // 2
    out.sequence[0, middle].sum().backward()
    assert w.grad is not None
    reached = torch.nonzero(w.grad.abs() > 0).flatten()
    assert (reached.max() - reached.min()) / SR >= 0.25


def test_time_stride_downsamples_frames_and_mask() -> None:
    enc = tiny_cnn()
    with torch.no_grad():
        out = enc(waves_batch(torch.randn(800) * 0.1, torch.randn(250) * 0.1))
    # 801 samples -> 11 frames -> 6 -> 3 -> 2 -> 1; valid frames 10 -> 5 -> 3 -> 2 -> 1
    # and 4 -> 2 -> 1 -> 1 -> 1.
    assert out.sequence.shape == (2, 1, 8)
    assert out.mask.tolist() == [[True], [True]]
    mask = torch.tensor([[True] * 10 + [False], [True] * 4 + [False] * 7])
    assert downsample_mask(mask, 2, 6).sum(1).tolist() == [5, 2]
    assert downsample_mask(mask, 3, 4).sum(1).tolist() == [4, 2]
    flat = tiny_cnn(time_stride=1)
    with torch.no_grad():
        assert flat(waves_batch(torch.randn(800))).sequence.shape[1] == 11


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_strided_cnn_is_the_same_alone_or_padded(stride: int) -> None:
    enc = tiny_cnn(time_stride=stride)
    short, long = torch.randn(1130) * 0.1, torch.randn(4000) * 0.1
    with torch.no_grad():
        alone = enc(waves_batch(short))
        padded = enc(waves_batch(long, short))
    n = int(alone.mask[0].sum())
    assert int(padded.mask[1].sum()) == n
    torch.testing.assert_close(padded.pooled[1], alone.pooled[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.sequence[1, :n], alone.sequence[0, :n], atol=1e-5, rtol=1e-5)


def test_map_norm_keeps_relative_strength_and_ignores_padding() -> None:
    norm = MaskedMapNorm(3)
    x = torch.randn(1, 3, 4, 5)
    x[..., 2] *= 10.0  # a loud column
    mask = torch.tensor([[True] * 5])
    y = norm(x, mask)
    # One affine map for the whole example: a LayerNorm over channels per position would
    # give every column the same size.
    centred = x - x.mean()
    torch.testing.assert_close(y, centred / centred.square().mean().sqrt(), atol=1e-4, rtol=1e-4)
    loud, quiet = y[..., 2].square().mean(), y[..., [0, 1, 3, 4]].square().mean()
    assert loud > 20 * quiet
    # Padding columns neither enter the statistics nor come out non-zero.
    padded = torch.cat([x, torch.full((1, 3, 4, 2), 1e3)], dim=3)
    y_pad = norm(padded, torch.tensor([[True] * 5 + [False] * 2]))
    torch.testing.assert_close(y_pad[..., :5], y, atol=1e-5, rtol=1e-5)
    assert (y_pad[..., 5:] == 0).all()


def test_bad_options_name_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"'cmvn' parameter of audio_cnn.*'utterance'"):
        build_encoder("audio_cnn", spec=AUDIO, cmvn="global")
    with pytest.raises(ValueError, match=r"'time_stride' parameter of audio_cnn.*got 0"):
        MelConv2d(16, 8, (4,), dropout=0.0, time_stride=0)
    # The old boolean flag still reads as before.
    assert build_encoder("audio_gru", spec=AUDIO, dim=8, hidden_dim=4, cmvn=True).cmvn == "band"
    assert build_encoder("audio_gru", spec=AUDIO, dim=8, hidden_dim=4, cmvn=False).cmvn == "none"
