"""benchmarks/raw_audio.py: its MFCC reference helpers and the runs it configures."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import raw_audio as bench


def test_dct_basis_is_orthonormal() -> None:
    basis = bench.dct_matrix(40, 40)
    torch.testing.assert_close(basis.T @ basis, torch.eye(40), atol=1e-5, rtol=1e-5)
    assert bench.dct_matrix(40, 20).shape == (40, 20)


def test_logistic_regression_fits_and_its_penalty_shrinks() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 4, generator=g) + torch.nn.functional.one_hot(y, 4).float() * 3.0
    weak = bench.fit_logreg(x, y, 3, 1e-4)
    strong = bench.fit_logreg(x, y, 3, 10.0)
    with torch.no_grad():
        assert (weak(x).argmax(1) == y).float().mean() > 0.9
    assert strong.weight.norm() < 0.5 * weak.weight.norm()


def test_configs_compare_old_and_new_audio_cnn_on_the_same_split() -> None:
    (old, old_cache), (kaiming, _), (new, new_cache) = bench.VARIANTS.values()
    a = bench.cnn_config(old, old_cache, 1, 3, "/tmp/x")
    b = bench.cnn_config(new, new_cache, 1, 3, "/tmp/x")
    k = bench.cnn_config(kaiming, False, 1, 3, "/tmp/x")
    assert k.model.encoders["audio"].params["init"] == "kaiming"
    assert "init" not in a.model.encoders["audio"].params  # the default initialisation
    assert a.model.encoders["audio"].params["pool"] == "mean"
    assert a.model.encoders["audio"].params["cache_mb"] == 0 and not a.data.options["cache"]
    assert b.model.encoders["audio"].params["pool"] == "stats" and b.data.options["cache"]
    assert (a.seed, a.data.val_fraction, a.optim.epochs) == (b.seed, b.data.val_fraction, 3)
    assert a.data.test_split == "test" and a.data.val_split is None
