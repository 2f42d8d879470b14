"""audio_ge2e: frozen GE2E frame states (Resemblyzer's weights) and a trainable adapter."""

from __future__ import annotations

import pytest
import torch

from polymodal.data import ModalityBatch, ModalitySpec, Sample, Schema, collate
from polymodal.encoders import build_encoder

SPEC = ModalitySpec("audio", "audio", shape=(), sample_rate=16000.0)


def _batch(waves: list[torch.Tensor], spec: ModalitySpec = SPEC) -> ModalityBatch:
    samples = [Sample(f"ex{i}", {"audio": w}) for i, w in enumerate(waves)]
    return collate(samples, Schema((spec,)))["audio"]


def _voice(n: int, seed: int, rate: int = 16000) -> torch.Tensor:
    """A voiced, vowel-like signal: a 120-180 Hz pulse train with noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / rate
    f0 = 120.0 + 60.0 * torch.rand(1, generator=g)
    harmonics = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 8))
    return 0.1 * harmonics + 0.01 * torch.randn(n, generator=g)


def test_a_clip_gives_the_same_features_alone_or_padded_in_a_batch() -> None:
    enc = build_encoder("audio_ge2e", spec=SPEC, dim=16).eval()
    short, long = _voice(8000, 0), _voice(16000, 1)
    with torch.no_grad():
        alone = enc(_batch([short]))
        both = enc(_batch([short, long]))
    assert alone.sequence.shape == (1, 8000 // 160 + 1, 16)
    assert both.sequence.shape == (2, 16000 // 160 + 1, 16)
    assert both.mask.sum(1).tolist() == [51, 101]
    torch.testing.assert_close(both.pooled[0], alone.pooled[0], atol=1e-5, rtol=1e-4)
    assert both.sequence[0, 51:].abs().max() == 0  # padding frames are zero


def test_last_layer_states_end_in_the_speaker_embedding() -> None:
    """frame_states reads the same LSTM as the embedding: its last state gives the embedding."""
    enc = build_encoder("audio_ge2e", spec=SPEC, dim=None, lstm_layers=[2])
    mels = torch.rand(2, 160, 40)
    with torch.no_grad():
        states = enc.ge2e.frame_states(mels, [2])  # (2, 160, 256)
        last = torch.nn.functional.normalize(torch.relu(enc.ge2e.linear(states[:, -1])), dim=-1)
        torch.testing.assert_close(last, enc.ge2e(mels))
        both = enc.ge2e.frame_states(mels, [0, 2])
    assert both.shape == (2, 160, 512)
    torch.testing.assert_close(both[..., 256:], states)


def test_backbone_is_frozen_and_stays_in_eval_mode() -> None:
    enc = build_encoder("audio_ge2e", spec=SPEC, dim=8)
    enc.train()
    assert not enc.ge2e.training
    assert all(not p.requires_grad for p in enc.ge2e.parameters())
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {f"adapter.{i}.{w}" for i in (0, 1) for w in ("weight", "bias")}
    out = enc(_batch([_voice(4000, 2), _voice(3000, 3)]))
    out.pooled.sum().backward()
    assert enc.adapter is not None and enc.adapter[1].weight.grad is not None
    raw = build_encoder("audio_ge2e", spec=SPEC, dim=None, lstm_layers=[0, 1])
    assert raw.out_dim == 512 and not any(p.requires_grad for p in raw.parameters())


def test_other_sample_rates_are_resampled_to_16_khz() -> None:
    from polymodal.data.decode import resample_audio

    spec8 = ModalitySpec("audio", "audio", shape=(), sample_rate=8000.0)
    enc = build_encoder("audio_ge2e", spec=spec8, dim=None).eval()
    wave8 = _voice(8000, 4, rate=8000)  # 1 s at 8 kHz
    ref = build_encoder("audio_ge2e", spec=SPEC, dim=None).eval()
    with torch.no_grad():
        out8 = enc(_batch([wave8], spec8))
        out16 = ref(_batch([resample_audio(wave8, 8000, 16000)]))
    assert out8.sequence.shape == (1, 16000 // 160 + 1, 256)
    torch.testing.assert_close(out8.sequence, out16.sequence)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lstm_layers": [3]}, r"'lstm_layers' parameter of audio_ge2e .* among 0, 1, 2"),
        ({"lstm_layers": [1, 1]}, r"'lstm_layers' parameter of audio_ge2e must list distinct"),
        ({"lstm_layers": []}, r"'lstm_layers' parameter of audio_ge2e"),
        ({"dropout": 1.0}, r"'dropout' parameter of audio_ge2e must lie in \[0, 1\)"),
    ],
)
def test_bad_parameters_name_the_parameter(params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_encoder("audio_ge2e", spec=SPEC, **params)


def test_a_spec_without_a_sample_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="audio_ge2e needs the audio's sample rate"):
        build_encoder("audio_ge2e", spec=ModalitySpec("audio", "audio", shape=()))


# --------------------------------------------------------------------------- speaker_norm


def _speakers() -> tuple[list[torch.Tensor], list[str]]:
    """Four clips of two 'speakers' (different pitch ranges and loudness)."""
    waves = [_voice(6000 + 800 * i, 10 + i) * (1.0 if i < 2 else 0.3) for i in range(4)]
    return waves, ["a", "a", "b", "b"]


def test_speaker_norm_standardises_each_speakers_frames() -> None:
    from polymodal.inference import calibrate_groups

    enc = build_encoder("audio_ge2e", spec=SPEC, dim=None, speaker_norm=True).eval()
    raw = build_encoder("audio_ge2e", spec=SPEC, dim=None).eval()
    waves, groups = _speakers()
    full = collate([Sample(f"ex{i}", {"audio": w}) for i, w in enumerate(waves)], Schema((SPEC,)))
    holder = torch.nn.Module()
    holder.encoders = torch.nn.ModuleDict({"audio": enc})
    with torch.no_grad():
        states = raw(full["audio"])  # (4, F, 256), padding frames zero
        assert calibrate_groups(torch.nn.Linear(2, 2), [(full, groups)]) == 0  # nothing to do
        assert calibrate_groups(holder, [(full, groups)]) == 2
        out = enc(full["audio"], ids=full.ids)
    for rows in ([0, 1], [2, 3]):
        frames = torch.cat([states.sequence[r][states.mask[r]] for r in rows]).double()
        mean, std = frames.mean(0), frames.std(0, unbiased=False)
        normed = torch.cat([out.sequence[r][out.mask[r]] for r in rows]).double()
        expected = (frames - mean) / std.clamp_min(1e-5)
        torch.testing.assert_close(normed, expected, atol=2e-3, rtol=1e-3)
        zeros = torch.zeros(256, dtype=torch.float64)
        torch.testing.assert_close(normed.mean(0), zeros, atol=1e-4, rtol=0)
    # the two speakers' statistics differ
    assert not torch.allclose(enc.groups.stats["a"][0], enc.groups.stats["b"][0], atol=1e-3)


def test_speaker_norm_without_statistics_says_how_to_get_them() -> None:
    enc = build_encoder("audio_ge2e", spec=SPEC, dim=8, speaker_norm=True).eval()
    batch = _batch([_voice(4000, 1)])
    with pytest.raises(
        ValueError, match=r"no speaker statistics for example 'ex0'.*calibrate_groups"
    ):
        enc(batch, ids=["ex0"])
    with pytest.raises(ValueError, match="needs the examples' ids"):
        enc(batch)


def test_speaker_norm_runs_through_the_model_and_predict() -> None:
    """MultimodalModel passes batch ids; predict() calibrates from the data set's groups."""
    from polymodal.data.dataset import MultimodalDataset
    from polymodal.data.modality import TargetSpec
    from polymodal.fusion import build_fusion
    from polymodal.inference import predict
    from polymodal.models import MultimodalModel

    waves, groups = _speakers()

    class Clips(MultimodalDataset):
        name, split = "clips", "test"
        schema = Schema((SPEC,), TargetSpec(task="classification", num_classes=2))

        def __len__(self) -> int:
            return len(waves)

        def __getitem__(self, i: int) -> Sample:
            return Sample(f"clip{i}", {"audio": waves[i]}, i % 2)

        def groups(self) -> list[str]:
            return groups

    torch.manual_seed(0)
    enc = build_encoder("audio_ge2e", spec=SPEC, dim=8, speaker_norm=True)
    fusion = build_fusion("early", in_dims={"audio": 8}, hidden_dim=8)
    model = MultimodalModel({"audio": enc}, fusion, torch.nn.Linear(8, 2), "classification", 2)
    model.eval()
    pred = predict(model, Clips(), batch_size=2)
    assert pred.outputs.shape == (4, 2) and torch.isfinite(pred.outputs).all()
    assert enc.known_ids() == {f"clip{i}" for i in range(4)}
    # the same clips standardised by the other speaker's statistics predict differently
    enc.set_group_stats({"clip0": "b"}, {})
    moved = predict(model, Clips(), batch_size=2)  # every id known: no re-calibration
    assert not torch.allclose(moved.outputs[0], pred.outputs[0], atol=1e-6)
    torch.testing.assert_close(moved.outputs[1:], pred.outputs[1:])


def test_cached_states_equal_fresh_ones_and_new_samples_miss() -> None:
    from polymodal.encoders import voice

    voice.clear_state_cache()
    cached = build_encoder("audio_ge2e", spec=SPEC, dim=None).eval()
    fresh = build_encoder("audio_ge2e", spec=SPEC, dim=None, cache_mb=0).eval()
    a, b = _voice(5000, 21), _voice(7000, 22)
    with torch.no_grad():
        first = cached(_batch([a, b]))
        assert len(voice._STATE_CACHE) == 2
        again = cached(_batch([b, a]))  # both from the cache, in another order and padding
        assert len(voice._STATE_CACHE) == 2
        ref = fresh(_batch([b, a]))
        noisy = cached(_batch([a + 0.01]))  # other samples: computed, not looked up
    torch.testing.assert_close(again.sequence, ref.sequence)
    torch.testing.assert_close(first.pooled[0], again.pooled[1])
    assert len(voice._STATE_CACHE) == 3
    assert not torch.allclose(noisy.pooled[0], first.pooled[0])
    # a cache smaller than one clip keeps nothing; a bad size names the parameter
    voice.clear_state_cache()
    tiny = build_encoder("audio_ge2e", spec=SPEC, dim=None, cache_mb=1e-3).eval()
    with torch.no_grad():
        tiny(_batch([a]))
    assert len(voice._STATE_CACHE) == 0
    with pytest.raises(ValueError, match="'cache_mb' parameter of audio_ge2e"):
        build_encoder("audio_ge2e", spec=SPEC, cache_mb=-1)
