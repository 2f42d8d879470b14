"""The ``mlp`` encoder for tabular rows and precomputed feature vectors or sequences.

Input (B, D) -> an MLP -> sequence (B, 1, D_out).  Input (B, T, D) (``features`` with
``sequence=True``) -> the MLP at every step -> (B, T, D_out) and a masked mean.

Optional input standardisation ``(x - mean) / std`` per feature, with statistics held in
buffers (saved in the state dict):

* :meth:`MLPEncoder.fit_normalizer` sets them from a tensor of training data;
* ``running_stats=True`` accumulates them over every training batch (exact running mean
  and variance over all valid rows seen, Chan et al.'s parallel update), and eval uses
  the accumulated values.

Before any statistics exist the transform is the identity.  A feature with zero
variance is only centred (its std is taken as 1, as scikit-learn's ``StandardScaler``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import ENCODERS, Encoder, EncoderOutput, masked_mean
from polymodal.encoders.timeseries import (
    check_dim,
    check_spec,
    sequence_mask,
    spec_channels,
    tensor_values,
)
from polymodal.layers.mlp import MLP


@ENCODERS.register(
    "mlp",
    "MLP for tabular rows and feature vectors/sequences",
    kind=(ModalityKind.TABULAR, ModalityKind.FEATURES),
)
class MLPEncoder(Encoder):
    """An MLP applied to feature vectors (or to every step of a feature sequence).

    The input size D_in is ``spec.shape[-1]``; ``kind`` is the spec's (``tabular`` or
    ``features``).

    Args:
        spec: the modality, of kind ``tabular`` or ``features``, with ``shape`` set.
        dim: output features D.
        hidden_dim: hidden width (``None``: ``max(D_in, D)``).
        num_layers: linear layers.
        dropout: dropout after hidden activations.
        running_stats: accumulate standardisation statistics while training.
    """

    norm_count: Tensor
    norm_mean: Tensor
    norm_m2: Tensor

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int = 128,
        hidden_dim: int | None = None,
        num_layers: int = 2,
        dropout: float = 0.0,
        running_stats: bool = False,
    ) -> None:
        super().__init__()
        check_spec(spec, "mlp")
        check_dim(dim, "mlp")
        in_dim = spec_channels(spec, "mlp", "(D,)")
        self.kind = spec.kind
        self.in_dim = in_dim
        self.out_dim = dim
        self.running_stats = running_stats
        self.mlp = MLP(in_dim, dim, hidden_dim, num_layers, "gelu", dropout, norm=True)
        self.register_buffer("norm_count", torch.zeros(()))
        self.register_buffer("norm_mean", torch.zeros(in_dim))
        self.register_buffer("norm_m2", torch.zeros(in_dim))

    # -- standardisation ----------------------------------------------------------------

    def _rows(self, x: Tensor, mask: Tensor | None) -> Tensor:
        rows = x.reshape(-1, x.shape[-1]) if mask is None else x[mask]
        return rows.to(self.norm_mean.dtype)  # (N, D)

    @torch.no_grad()
    def fit_normalizer(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Set the standardisation statistics to those of ``x``'s valid rows.

        Args:
            x: training data, (N, D) or (N, T, D).
            mask: which rows/steps are valid, (N,) or (N, T) bool; default all.
        """
        if x.dim() not in (2, 3) or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"mlp.fit_normalizer expects (N, {self.in_dim}) or (N, T, {self.in_dim}), got "
                f"{tuple(x.shape)}"
            )
        rows = self._rows(x.to(self.norm_mean.device), None if mask is None else mask.to(x.device))
        self.norm_count.zero_()
        self.norm_mean.zero_()
        self.norm_m2.zero_()
        self._update(rows)

    def _update(self, rows: Tensor) -> None:
        """Merge the statistics of ``rows`` (N, D) into the running ones."""
        n_b = float(rows.shape[0])
        if n_b == 0:
            return
        mean_b = rows.mean(0)
        m2_b = (rows - mean_b).square().sum(0)
        n_a = self.norm_count.clone()
        n = n_a + n_b
        delta = mean_b - self.norm_mean
        self.norm_mean += delta * (n_b / n)
        self.norm_m2 += m2_b + delta.square() * (n_a * n_b / n)
        self.norm_count.fill_(n)

    def normalizer(self) -> tuple[Tensor, Tensor]:
        """Current (mean, std), each (D,); (0, 1) before any statistics exist."""
        var = self.norm_m2 / self.norm_count.clamp_min(1.0)
        std = var.sqrt()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        return self.norm_mean, std

    # -- forward --------------------------------------------------------------------------

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Encode feature vectors (L = 1) or feature sequences (masked mean over steps).

        Shape:
            batch.values: (B, D_in) or (B, T, D_in)
            output.sequence: (B, 1, D) or (B, T, D); output.mask: (B, 1) all True or
            (B, T); output.pooled: (B, D)
        """
        x = tensor_values(
            batch, "mlp", f"(B, {self.in_dim}) or (B, T, {self.in_dim})", (2, 3), (self.in_dim,)
        )
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, 1, D_in)
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, 1)
            stats_rows = batch.present.to(device=x.device, dtype=torch.bool)[:, None]
        else:
            mask = sequence_mask(batch, x, "mlp")  # (B, T)
            stats_rows = mask
        if self.running_stats and self.training:
            with torch.no_grad():
                self._update(self._rows(x.detach(), stats_rows))
        mean, std = self.normalizer()
        x = (x - mean.to(x.dtype)) / std.to(x.dtype)
        seq = self.mlp(x) * mask.unsqueeze(-1).to(x.dtype)  # (B, L, D)
        return EncoderOutput(seq, mask, masked_mean(seq, mask))
