"""The binding benchmark's fixed-size log-mel audio feature (benchmarks/binding.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from binding import FixedLogMel, _audio_batch
from polymodal.data.decode import decode_audio


def test_fixed_logmel_is_fixed_size_and_independent_of_padding(data_root: Path) -> None:
    rec = data_root / "fsdd" / "recordings"
    waves = [decode_audio(rec / f, sample_rate=8000) for f in ("0_george_0.wav", "7_theo_3.wav")]
    enc = FixedLogMel(8000.0, n_mels=20, frames=16)
    assert enc.out_dim == 20 * 18
    both = enc(_audio_batch(waves)).pooled  # (2, D), the shorter one padded
    alone = enc(_audio_batch(waves[:1])).pooled
    assert both.shape == (2, enc.out_dim) and torch.isfinite(both).all()
    torch.testing.assert_close(both[:1], alone)  # padding does not leak into the features
    assert not any(p.requires_grad for p in enc.parameters())  # a frozen, cacheable encoder
    enc.mean.fill_(1.0)
    torch.testing.assert_close(enc(_audio_batch(waves[:1])).pooled, alone - 1.0)
