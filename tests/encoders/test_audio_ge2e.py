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
