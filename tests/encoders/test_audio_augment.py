"""Training-time audio augmentation (polymodal.layers.audio_augment) and its wiring into the
audio encoders: identity at strength 0, seeded, training mode only, shapes kept."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.data.modality import ModalityKind, ModalitySpec, Schema, TargetSpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders import build_encoder
from polymodal.layers.audio_augment import (
    AUGMENT_DEFAULTS,
    AudioAugment,
    add_noise,
    build_augment,
    freq_warp,
    random_gain,
    spec_augment,
    speed_perturb,
    time_shift,
)
from polymodal.models.build import build_model
from polymodal.models.config import ModelConfig

SR = 8000
AUDIO = ModalitySpec("speech", ModalityKind.AUDIO, shape=(), sample_rate=SR)
ALL_ON = {
    "speed": 0.1,
    "shift": 0.2,
    "gain_db": 6.0,
    "noise_p": 1.0,
    "noise_snr": [5.0, 20.0],
    "freq_warp": 0.1,
    "freq_masks": 2,
    "freq_width": 4,
    "time_masks": 2,
    "time_width": 5,
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def waves() -> tuple[torch.Tensor, torch.Tensor]:
    """Two tones, 0.3 s and 0.2 s, padded to 0.3 s."""
    t = torch.arange(int(0.3 * SR)) / SR
    wave = torch.stack(
        [0.1 * torch.sin(2 * math.pi * 440 * t), 0.2 * torch.sin(2 * math.pi * 800 * t)]
    )
    lengths = torch.tensor([len(t), int(0.2 * SR)])
    wave[1, lengths[1] :] = 0
    return wave, lengths


def batch() -> ModalityBatch:
    wave, lengths = waves()
    return ModalityBatch(wave, torch.ones(2, dtype=torch.bool), lengths)


def test_every_transform_is_the_identity_at_strength_zero() -> None:
    wave, lengths = waves()
    feats, mask = torch.randn(2, 30, 16), torch.ones(2, 30, dtype=torch.bool)
    for w, n in (speed_perturb(wave, lengths, 0.0, gen()), time_shift(wave, lengths, 0.0, gen())):
        assert torch.equal(w, wave) and torch.equal(n, lengths)
    assert torch.equal(random_gain(wave, 0.0, gen()), wave)
    assert torch.equal(add_noise(wave, lengths, 0.0, (0.0, 10.0), gen()), wave)
    assert torch.equal(freq_warp(feats, 0.0, gen()), feats)
    assert torch.equal(spec_augment(feats, mask, 3, 0, 3, 0, gen()), feats)
    assert torch.equal(spec_augment(feats, mask, 0, 5, 0, 5, gen()), feats)
    assert not AudioAugment().active and not AudioAugment(freq_masks=2).active


def test_no_clip_is_cut_and_lengths_follow_speed_and_shift() -> None:
    wave, lengths = waves()
    aug = AudioAugment(**ALL_ON)
    out, new = aug.waveform(wave, lengths)
    assert out.shape[0] == 2 and out.shape[1] == max(wave.shape[1], int(new.max()))
    assert new.shape == lengths.shape and bool((new > 0).all())
    for i, n in enumerate(new.tolist()):
        assert bool((out[i, n:] == 0).all())  # padding stays zero
    # a clip slowed down (or shifted) past the batch's T widens the batch: nothing is cut
    slow, n_slow = speed_perturb(wave, lengths, 0.5, gen(0))
    rate = torch.rand(2, generator=gen(0), dtype=torch.float64) * 1.0 + 0.5
    assert n_slow[0] == round(int(lengths[0]) / float(rate[0]))
    assert slow.shape[1] == max(wave.shape[1], int(n_slow.max()))
    shifted, n_shift = time_shift(wave, lengths, 0.5, gen(0))
    k = int(n_shift[0] - lengths[0])
    assert torch.equal(shifted[0, k : k + int(lengths[0])], wave[0, : int(lengths[0])])
    feats = torch.randn(2, 31, 16)
    mask = torch.arange(31)[None, :] < torch.tensor([[31], [21]])
    assert aug.spectrogram(feats, mask).shape == feats.shape
    # gain and noise keep the lengths; speed rescales them
    assert torch.equal(AudioAugment(gain_db=6.0, noise_p=1.0).waveform(wave, lengths)[1], lengths)
    _, fast = speed_perturb(wave, lengths, 0.5, gen(3))
    assert not torch.equal(fast, lengths)


def test_speed_resamples_by_the_drawn_factor() -> None:
    wave, lengths = waves()
    g = gen(1)
    rate = torch.rand(2, generator=gen(1), dtype=torch.float64) * 0.4 + 0.8  # what it draws
    _, new = speed_perturb(wave, lengths, 0.2, g)
    expect = [round(n / r) for n, r in zip(lengths.tolist(), rate.tolist(), strict=True)]
    assert new.tolist() == expect


def test_noise_hits_the_drawn_snr() -> None:
    t = torch.arange(SR) / SR
    wave = 0.1 * torch.sin(2 * math.pi * 300 * t)[None].repeat(4, 1)  # (4, SR)
    lengths = torch.full((4,), SR)
    noisy = add_noise(wave, lengths, 1.0, (10.0, 10.0), gen())
    snr = 10 * torch.log10(wave.square().mean(1) / (noisy - wave).square().mean(1))
    assert torch.allclose(snr, torch.full((4,), 10.0), atol=0.3)


def test_spec_masks_stay_inside_valid_frames_and_width() -> None:
    feats = torch.ones(8, 40, 16)
    mask = torch.arange(40)[None, :] < torch.randint(5, 41, (8, 1), generator=gen(2))
    out = spec_augment(feats, mask, 0, 0, 1, 6, gen())
    zeroed = (out == 0).all(2)  # (8, 40) frames zeroed
    assert not bool((zeroed & ~mask).any())
    assert int(zeroed.sum(1).max()) <= 6
    out = spec_augment(feats, mask, 1, 3, 0, 0, gen())
    assert int((out == 0).all(1).sum(1).max()) <= 3


def test_freq_warp_moves_a_peak() -> None:
    feats = torch.zeros(1, 1, 32)
    feats[0, 0, 20] = 1.0
    g = gen()
    factor = float(torch.rand(1, generator=gen(), dtype=torch.float64) * 0.6 + 0.7)
    out = freq_warp(feats, 0.3, g)
    assert int(out[0, 0].argmax()) == round(20 / factor)


def test_deterministic_given_the_seed() -> None:
    wave, lengths = waves()
    feats, mask = torch.randn(2, 31, 16), torch.ones(2, 31, dtype=torch.bool)
    a, b, c = (
        AudioAugment(**ALL_ON, seed=5),
        AudioAugment(**ALL_ON, seed=5),
        AudioAugment(**ALL_ON, seed=6),
    )
    wa, wb, wc = a.waveform(wave, lengths), b.waveform(wave, lengths), c.waveform(wave, lengths)
    assert torch.equal(wa[0], wb[0]) and torch.equal(wa[1], wb[1])
    assert not torch.equal(wa[0], wc[0])
    assert torch.equal(a.spectrogram(feats, mask), b.spectrogram(feats, mask))
    a.manual_seed(5)
    assert torch.equal(a.waveform(wave, lengths)[0], wa[0])


def encoder(**augment: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_encoder(
        "audio_cnn", AUDIO, dim=8, channels=(4, 4), n_mels=16, cache_mb=0, augment=augment or None
    )


def test_encoder_augments_in_training_only() -> None:
    plain, aug = encoder(), encoder(**ALL_ON)
    aug.load_state_dict(plain.state_dict())
    for m in (plain, aug):
        m.eval()
    assert torch.equal(plain(batch()).pooled, aug(batch()).pooled)  # eval: unchanged
    plain.train(), aug.train()
    assert not torch.allclose(plain(batch()).pooled, aug(batch()).pooled)
    off = encoder(**{k: v for k, v in AUGMENT_DEFAULTS.items() if k != "noise_snr"})
    off.load_state_dict(plain.state_dict())
    off.train()
    assert torch.equal(plain(batch()).pooled, off(batch()).pooled)  # strength 0: identity


def test_build_model_seeds_augmentation_from_the_run_seed() -> None:
    schema = Schema((AUDIO,), TargetSpec("classification", 2))
    cfg = ModelConfig.from_dict(
        {
            "encoders": {
                "speech": {
                    "name": "audio_cnn",
                    "params": {"dim": 8, "channels": [4], "n_mels": 16, "augment": ALL_ON},
                }
            },
            "fusion": {"name": "early"},
        }
    )

    def draws(seed: int) -> torch.Tensor:
        model = build_model(cfg, schema, seed=seed)
        aug = model.encoders["speech"].augment
        return aug.waveform(*waves())[0]

    assert torch.equal(draws(1), draws(1))
    assert not torch.equal(draws(1), draws(2))


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"audio_cnn augment key 'sped'.*Did you mean 'speed'"):
        build_augment({"sped": 0.1}, "audio_cnn")
    with pytest.raises(
        ValueError, match="audio_cnn augment: The 'speed' augmentation must be a number in"
    ):
        build_augment({"speed": 0.9}, "audio_cnn")
    with pytest.raises(ValueError, match="'noise_snr' augmentation must be \\[low, high\\]"):
        build_augment({"noise_snr": [30, 10]}, "audio_cnn")
    with pytest.raises(ValueError, match="'freq_masks' augmentation must be an int >= 0"):
        build_augment({"freq_masks": 1.5}, "audio_gru")
    with pytest.raises(TypeError, match="'augment' parameter of audio_cnn must be a mapping"):
        build_augment([0.1], "audio_cnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="augment key 'pitch'"):
        build_encoder("audio_transformer", AUDIO, dim=8, augment={"pitch": 2})


def test_speaker_norm_standardises_each_speakers_bands() -> None:
    from polymodal.data.sample import Batch
    from polymodal.inference import calibrate_groups

    schema = Schema((AUDIO,), TargetSpec("classification", 2))
    params = {"dim": 8, "channels": [4], "n_mels": 16, "cache_mb": 0, "speaker_norm": True}
    cfg = ModelConfig.from_dict(
        {
            "encoders": {"speech": {"name": "audio_cnn", "params": params}},
            "fusion": {"name": "early"},
        }
    )
    model = build_model(cfg, schema).eval()
    enc = model.encoders["speech"]
    t = torch.arange(int(0.3 * SR)) / SR
    wave = torch.stack([0.1 * torch.sin(2 * math.pi * f * t) for f in (300, 500, 1200, 1500)])
    mb = ModalityBatch(wave, torch.ones(4, dtype=torch.bool), torch.full((4,), len(t)))
    ids = ["a0", "a1", "b0", "b1"]
    batch = Batch({"speech": mb}, None, ids)
    with pytest.raises(
        ValueError, match=r"no speaker statistics for example 'a0'.*calibrate_groups"
    ):
        model(batch)
    assert calibrate_groups(model, [(batch, ["a", "a", "b", "b"])]) == 2
    feats, mask = enc.cached_features(wave, mb.lengths)
    normed = enc.groups.normalize(feats, ids)  # (4, F, 16)
    for rows in ([0, 1], [2, 3]):  # each speaker's frames: every band mean 0, std 1
        x = normed[rows][mask[rows]]  # (frames, 16)
        torch.testing.assert_close(x.mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    assert model(batch).logits.shape == (4, 2)
    plain = build_encoder("audio_cnn", AUDIO, dim=8, channels=(4,), n_mels=16)
    assert not plain.uses_groups
