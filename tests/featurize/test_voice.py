"""The voice stage: YIN on synthetic tones, silero-vad, prosody frames and GE2E on GRID/RAVDESS."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor

from polymodal.data.align import read_align_file
from polymodal.data.decode import decode_audio, decode_video
from polymodal.featurize.pitch import yin
from polymodal.featurize.voice import FRAME_RATE, VoiceAnalyzer, VoiceFeatures
from polymodal.layers.ge2e import (
    _mel_basis,
    load_speaker_encoder,
    partial_starts,
    resemblyzer_weights_path,
)
from polymodal.layers.melspec import LogMelSpectrogram
from tests.conftest import require

SR = 16000
# Speakers told apart by sight in the clips (GRID file names code the sentence, not the
# speaker): male voices here, and one female voice.
GRID_MALE = ("bbaf2n", "id2_vcd_swwp2s", "pwij3p")
GRID_FEMALE = ("brbk7n",)


def _tone(freq: Tensor | float, seconds: float = 1.0, amplitude: float = 0.5) -> Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    if isinstance(freq, Tensor):
        phase = 2 * math.pi * torch.cumsum(freq, 0) / SR
    else:
        phase = 2 * math.pi * freq * t
    return (amplitude * torch.sin(phase)).float()


@pytest.fixture(scope="module")
def grid(data_root: Path) -> dict[str, Tensor]:
    """16 kHz audio of four GRID clips (3 s each)."""
    out = {}
    for name in GRID_MALE + GRID_FEMALE:
        clip = decode_video(data_root / "grid_samples" / f"{name}.mpg", fps=1.0, audio_rate=SR)
        assert clip.audio is not None
        out[name] = clip.audio
    return out


def _require_resemblyzer() -> None:
    """Skip without Resemblyzer's weight file (fail under CI=true, as ``require``)."""
    try:
        resemblyzer_weights_path()
    except ImportError as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but Resemblyzer's weights are missing ({e}).")
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def analyzer() -> VoiceAnalyzer:
    require("silero_vad")
    _require_resemblyzer()
    return VoiceAnalyzer()


@pytest.fixture(scope="module")
def grid_features(grid: dict[str, Tensor], analyzer: VoiceAnalyzer) -> dict[str, VoiceFeatures]:
    return {name: analyzer(wave, SR) for name, wave in grid.items()}


# ---------------------------------------------------------------- YIN on synthetic signals


@pytest.mark.parametrize("freq", [80.0, 220.0, 440.0])
def test_yin_sine_pitch_within_1hz(freq: float) -> None:
    track = yin(_tone(freq), SR, 160)
    inner = slice(3, -3)  # frames whose window lies inside the tone
    assert track.f0_hz.shape == (100,)
    assert (track.f0_hz[inner] - freq).abs().max() < 1.0
    assert track.voicing[inner].min() > 0.95


def test_yin_white_noise_is_unvoiced() -> None:
    g = torch.Generator().manual_seed(0)
    track = yin(0.1 * torch.randn(2 * SR, generator=g), SR, 160)
    assert (track.f0_hz > 0).float().mean() < 0.05
    assert track.voicing.mean() < 0.4


def test_yin_tracks_a_chirp() -> None:
    n = 2 * SR
    freq = 100.0 + 150.0 * torch.arange(n, dtype=torch.float64) / SR  # 100 -> 400 Hz in 2 s
    track = yin(_tone(freq, seconds=2.0), SR, 160)
    truth = 100.0 + 150.0 * torch.arange(track.f0_hz.shape[0]) / FRAME_RATE
    err = (track.f0_hz - truth)[3:-3].abs()
    assert err.median() < 0.5  # frame i reports the pitch at i / 100 s, not a window later
    assert err.max() < 1.5


def test_yin_silence_and_search_range() -> None:
    silent = yin(torch.zeros(SR), SR, 160)
    assert silent.f0_hz.abs().sum() == 0 and silent.voicing.abs().sum() == 0
    low = yin(_tone(40.0), SR, 160, fmin=50.0, fmax=500.0)  # below fmin: never 40 Hz
    assert not ((low.f0_hz - 40.0).abs() < 5.0).any()
    with pytest.raises(ValueError, match="fmin < fmax"):
        yin(torch.zeros(SR), SR, 160, fmin=300.0, fmax=200.0)
    with pytest.raises(ValueError, match="Nyquist"):
        yin(torch.zeros(SR), SR, 160, fmax=9000.0)


# ---------------------------------------------------------------- frame grid and levels


def test_frame_grid_energy_and_logmel(analyzer: VoiceAnalyzer) -> None:
    wave = _tone(220.0, seconds=1.005, amplitude=1.0)  # 16,080 samples -> 101 frames
    feats = analyzer(wave, SR)
    assert feats.num_frames == 101
    assert torch.equal(feats.frame_times, torch.arange(101, dtype=torch.float64) / 100.0)
    for name in ("pitch_hz", "voicing", "energy_db"):
        assert getattr(feats, name).shape == (101,) and getattr(feats, name).dtype == torch.float32
    # a full-scale sine is -3.01 dBFS wherever the 25 ms window is full
    assert (feats.energy_db[2:-2] - 10 * math.log10(0.5)).abs().max() < 0.05
    expected = LogMelSpectrogram(SR, 40, win_ms=25.0, hop_ms=10.0)(wave[None]).features[0, :101]
    assert feats.logmel.shape == (101, 40)
    torch.testing.assert_close(feats.logmel, expected)
    # the same tone at 44.1 kHz lands on the same grid and pitch
    t = torch.arange(round(1.005 * 44100), dtype=torch.float64) / 44100
    resampled = analyzer(torch.sin(2 * math.pi * 220.0 * t).float(), 44100)
    assert resampled.num_frames == 101
    assert (resampled.pitch_hz[3:-3] - 220.0).abs().max() < 1.0


def test_blocks_do_not_change_the_frames(grid: dict[str, Tensor]) -> None:
    g = torch.Generator().manual_seed(1)
    noisy = grid["brbk7n"][: 2 * SR + 77] + 0.01 * torch.randn(2 * SR + 77, generator=g)
    whole = VoiceAnalyzer().frames(noisy)
    blocked = VoiceAnalyzer(block_seconds=0.37).frames(noisy)  # 6 blocks, the last one short
    assert whole["pitch_hz"].shape == (201,) and (whole["pitch_hz"] > 0).sum() > 40
    for name, value in whole.items():
        torch.testing.assert_close(blocked[name], value, atol=1e-4, rtol=1e-5, msg=name)
    with pytest.raises(ValueError, match="'block_seconds'"):
        VoiceAnalyzer(block_seconds=float("inf"))


def test_silence_gives_no_segments_and_empty_speaker(analyzer: VoiceAnalyzer) -> None:
    for wave in (torch.zeros(2 * SR), torch.zeros(0), torch.zeros(100)):
        feats = analyzer(wave, SR)
        assert feats.segments == []
        assert feats.speaker.shape == (0, 256) and feats.speaker.dtype == torch.float32
        assert feats.num_frames == math.ceil(wave.shape[0] / 160)
        assert feats.logmel.shape == (feats.num_frames, 40)
        assert (feats.energy_db == -100.0).all() and (feats.pitch_hz == 0).all()


def test_bad_inputs_name_the_parameter(analyzer: VoiceAnalyzer) -> None:
    with pytest.raises(ValueError, match=r"'wave'.*mono.*wave\.mean"):
        analyzer(torch.zeros(2, SR), SR)
    nan = torch.zeros(SR)
    nan[10] = float("nan")
    with pytest.raises(ValueError, match=r"'wave'.* 1 NaN/inf"):
        analyzer(nan, SR)
    with pytest.raises(TypeError, match=r"'wave'.*floating"):
        analyzer(torch.zeros(SR, dtype=torch.int16), SR)
    with pytest.raises(ValueError, match="'sample_rate'"):
        analyzer(torch.zeros(SR), 0)
    with pytest.raises(ValueError, match="'n_mels'"):
        VoiceAnalyzer(n_mels=0)
    with pytest.raises(ValueError, match="'fmin' and 'fmax'"):
        VoiceAnalyzer(fmin=500.0, fmax=100.0)


# ---------------------------------------------------------------- GRID speech


def test_vad_on_grid_matches_the_measured_segment(grid_features: dict[str, VoiceFeatures]) -> None:
    # data README: silero-vad finds one segment 0.96-2.17 s in bbaf2n.mpg
    (segment,) = grid_features["bbaf2n"].segments
    assert segment == pytest.approx((0.96, 2.17), abs=0.02)


def test_vad_segments_cover_every_aligned_word(
    data_root: Path, grid_features: dict[str, VoiceFeatures]
) -> None:
    words = [
        w
        for w in read_align_file(data_root / "grid_samples" / "swwp2s.align")
        if w.word not in ("sil", "sp")
    ]
    assert len(words) == 6
    segments = grid_features["id2_vcd_swwp2s"].segments
    for w in words:
        mid = (w.start + w.end) / 2
        assert any(a <= mid <= b for a, b in segments), (w, segments)


def test_grid_pitch_is_voiced_inside_speech_and_plausible(
    grid_features: dict[str, VoiceFeatures],
) -> None:
    for name, feats in grid_features.items():
        inside = torch.zeros(feats.num_frames, dtype=torch.bool)
        for a, b in feats.segments:
            inside |= (feats.frame_times >= a) & (feats.frame_times < b)
        voiced = feats.pitch_hz > 0
        assert voiced.sum() > 40, name  # > 0.4 s of voiced speech in each sentence
        assert (voiced & inside).sum() >= 0.95 * voiced.sum(), name
        assert (voiced & inside).sum() >= 0.3 * inside.sum(), name
        assert feats.voicing[voiced].min() >= 0.8 - 1e-6  # threshold 0.2
        median = float(feats.pitch_hz[voiced].median())
        low, high = (75.0, 150.0) if name in GRID_MALE else (160.0, 260.0)
        assert low < median < high, (name, median)


# ---------------------------------------------------------------- speaker embeddings


def test_partial_windows_follow_resemblyzer() -> None:
    # compute_partial_slices(n, rate=1.3, min_coverage=0.75): step round(16000/1.3/160) = 77
    assert partial_starts(48000) == [0, 77, 154]  # last partial 91 % covered: kept
    assert partial_starts(30000) == [0]  # second partial 69 % covered: dropped
    assert partial_starts(8000) == [0]  # shorter than one partial: padded
    assert partial_starts(64000) == [0, 77, 154, 231]


def test_mel_filterbank_is_librosas() -> None:
    # librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)[mel, bin], which Resemblyzer uses
    # (importing librosa here costs seconds; the whole matrix matched to 1e-9 when checked)
    fb = _mel_basis()  # (201, 40)
    assert fb.shape == (201, 40)
    golden = {
        (0, 2): 0.012404520995914936,
        (0, 3): 0.005014311522245407,
        (10, 20): 0.01187948975712061,
        (10, 21): 0.007915240712463856,
        (20, 44): 0.007191917393356562,
        (20, 45): 0.005020477343350649,
        (39, 185): 0.0017249403754249215,
        (39, 186): 0.0017012155149132013,
    }
    for (mel, freq_bin), value in golden.items():
        assert float(fb[freq_bin, mel]) == pytest.approx(value, rel=1e-5)
    assert (fb[:, 0] > 0).sum() == 3 and fb[0].sum() == 0  # a narrow lowest filter, no DC


def test_speaker_embedding_golden_values(grid: dict[str, Tensor]) -> None:
    _require_resemblyzer()
    # Resemblyzer 0.1.4's own VoiceEncoder.embed_utterance on the same 16 kHz bbaf2n audio
    # (normalize_volume(-30 dB, increase_only), no webrtcvad trimming; run outside the tests
    # with a stub pkg_resources): the top five entries; ours matched with cosine 1.000000.
    wave = grid["bbaf2n"]
    (emb,) = load_speaker_encoder().embed_segments(wave, [(0, wave.shape[0])])
    index = torch.tensor([243, 226, 119, 63, 142, 0])
    golden = torch.tensor([0.28973, 0.2359, 0.21358, 0.20047, 0.19122, 0.0])
    torch.testing.assert_close(emb[index], golden, atol=2e-4, rtol=0)
    assert emb.norm() == pytest.approx(1.0, abs=1e-5) and emb.min() >= 0


def test_grid_speaker_embeddings_per_segment(grid_features: dict[str, VoiceFeatures]) -> None:
    for feats in grid_features.values():
        assert feats.speaker.shape == (len(feats.segments), 256)
        torch.testing.assert_close(feats.speaker.norm(dim=1), torch.ones(len(feats.segments)))


def test_same_speaker_is_closer_than_another(data_root: Path) -> None:
    """RAVDESS actors (labelled in the file names): two clips of one actor vs two others."""
    _require_resemblyzer()
    root = data_root / "ravdess_speech"

    def embed(actor: int, statement: int) -> Tensor:
        path = root / f"Actor_{actor:02d}" / f"03-01-01-01-{statement:02d}-01-{actor:02d}.ogg"
        wave = decode_audio(path, sample_rate=SR)
        return load_speaker_encoder().embed_segments(wave, [(0, wave.shape[0])])[0]

    a1, a2 = embed(1, 1), embed(1, 2)  # actor 1 (male), both sentences
    same = float(a1 @ a2)
    for other in (embed(3, 2), embed(2, 2)):  # another male, a female
        assert same > float(a1 @ other) + 0.05


def test_two_speakers_in_one_recording(
    grid: dict[str, Tensor],
    grid_features: dict[str, VoiceFeatures],
    analyzer: VoiceAnalyzer,
) -> None:
    """A male then a female GRID sentence: two segments, each with its own speaker row."""
    first, second = grid["bbaf2n"], grid["brbk7n"]
    feats = analyzer(torch.cat([first, second]), SR)
    offset = first.shape[0] / SR
    assert len(feats.segments) == 2 and feats.speaker.shape == (2, 256)
    for (start, end), alone in zip(
        feats.segments, (grid_features["bbaf2n"], grid_features["brbk7n"]), strict=True
    ):
        (ref_start, ref_end) = alone.segments[0]
        shift = 0.0 if alone is grid_features["bbaf2n"] else offset
        assert start == pytest.approx(ref_start + shift, abs=0.05)
        assert end == pytest.approx(ref_end + shift, abs=0.05)
    own = torch.stack([grid_features["bbaf2n"].speaker[0], grid_features["brbk7n"].speaker[0]])
    cos = feats.speaker @ own.T  # (2, 2)
    assert cos.diagonal().min() > 0.98
    assert cos[0, 1] < 0.8 and cos[1, 0] < 0.8
