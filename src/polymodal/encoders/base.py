"""The encoder interface: one modality's :class:`ModalityBatch` in, :class:`EncoderOutput` out.

Every encoder is registered in :data:`ENCODERS` under a name, with the modality kinds it
accepts (``kind=``), either as its class (whose ``__init__(self, spec, dim=..., ...)`` is
the builder, so each default is written once) or, where building assembles parts (a
log-mel front end and a backbone, a frame encoder and a temporal model), as a builder
function ``builder(spec, dim=..., ...)``.  Either way the first parameter is the
modality's :class:`~polymodal.data.modality.ModalitySpec`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.outputs import EncoderOutput
from polymodal.registry import Registry


class Encoder(nn.Module):
    """Base class of all encoders.

    Subclasses set ``kind`` (the :class:`ModalityKind` they accept) and ``out_dim``
    (D of their outputs) and implement ``forward(batch: ModalityBatch) -> EncoderOutput``.
    Rows whose ``present`` is False may hold any finite values; fusion modules ignore
    them through the presence masks.
    """

    kind: ModalityKind
    out_dim: int
    #: True for encoders that standardise each example by statistics of its group (e.g.
    #: ``audio_ge2e(speaker_norm=True)``): their ``forward(batch, ids)`` needs the example
    #: ids, and :func:`polymodal.inference.calibrate_groups` sets the statistics.
    uses_groups: bool = False

    def forward(self, batch: ModalityBatch) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def layer_blocks(self) -> list[nn.Module]:
        """The encoder's blocks in order, input side first (``optim.layer_decay`` gives the
        last the largest rate); ``[]`` for encoders without such a stack."""
        return []

    # A frozen stem and a trained tail: ``forward(b) == forward_tail(*forward_stem(b))``, every
    # trainable parameter in the tail.  Fine-tuning the last blocks then needs the stem's
    # outputs only once: a joint space caches them (polymodal.joint.features) and trains the
    # tail and its projection on them, the way frozen encoders' pooled features are cached.

    @property
    def has_stem(self) -> bool:
        """Whether :meth:`forward_stem` and :meth:`forward_tail` split this encoder (frozen stem, trained
        tail); e.g. ``minilm`` or ``efficientnet_lite0`` with ``trainable_layers`` set."""
        return False

    def forward_stem(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        """The frozen part's output: the states that enter the trained blocks.

        Shape:
            output: sequence (B, L, E) and mask (B, L), True at real steps.
        """
        raise TypeError(
            f"{type(self).__name__} has no frozen stem (has_stem is False); set its "
            "trainable_layers to fine-tune its last blocks on cached inputs."
        )

    def forward_tail(self, sequence: Tensor, mask: Tensor) -> EncoderOutput:
        """The trained part: :meth:`forward_stem`'s output in, the encoder's output out.

        Shape:
            sequence: (B, L, E); mask: (B, L); output as :meth:`forward`'s.
        """
        raise TypeError(
            f"{type(self).__name__} has no trained tail (has_stem is False); set its "
            "trainable_layers to fine-tune its last blocks on cached inputs."
        )


class GroupStats:
    """Each group's (speaker's) mean and standard deviation of an encoder's features, and
    the group of each example id: what an encoder with ``uses_groups`` standardises by.

    :func:`polymodal.inference.calibrate_groups` fills it (through the encoder's
    ``set_group_stats``) from the data's unlabelled examples; it is data, not weights, so
    it is not in ``state_dict``.

    Args:
        encoder: the encoder's description for messages, e.g. ``"audio_ge2e(speaker_norm=true)"``.
        dim: D, the size of the statistics.
    """

    def __init__(self, encoder: str, dim: int) -> None:
        self.encoder, self.dim = encoder, dim
        self.group_of: dict[str, str] = {}  # example id -> group
        self.stats: dict[str, tuple[Tensor, Tensor]] = {}  # group -> (mean, std), (D,)

    def update(self, group_of: dict[str, str], stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Add example ids' groups and groups' (mean, std); later calls overwrite the ids
        and groups they name."""
        self.group_of.update(group_of)
        self.stats.update({g: (m.float().cpu(), s.float().cpu()) for g, (m, s) in stats.items()})

    def known_ids(self) -> set[str]:
        """The example ids whose group statistics are set."""
        return set(self.group_of)

    def normalize(self, x: Tensor, ids: Sequence[str] | None) -> Tensor:
        """``(x - mean_g) / std_g`` with each example's group g (identity for a group
        without statistics).

        Shape:
            x: (B, F, D); output: (B, F, D)
        """
        if ids is None:
            raise ValueError(
                f"{self.encoder} standardises each example by its speaker's statistics, so "
                "it needs the examples' ids: call it through MultimodalModel (which passes "
                "batch.ids), or pass ids=."
            )
        unknown = [i for i in ids if i not in self.group_of]
        if unknown:
            raise ValueError(
                f"{self.encoder} has no speaker statistics for example {unknown[0]!r} "
                f"({len(unknown)} of {len(ids)} in this batch). Compute them from the data "
                "first with polymodal.inference.calibrate_groups(model, dataset) (train, "
                "evaluate and predict do it)."
            )
        identity = (torch.zeros(self.dim), torch.ones(self.dim))
        pairs = [self.stats.get(self.group_of[i], identity) for i in ids]
        mean = torch.stack([p[0] for p in pairs]).to(x)  # (B, D)
        std = torch.stack([p[1] for p in pairs]).to(x)  # (B, D)
        return (x - mean[:, None]) / std[:, None]


def weights_fingerprint(model: nn.Module) -> str:
    """A cheap digest of a module's weights (sums and sizes of every tensor): the key under
    which frozen encoders share cached outputs, so weights that differ never share."""
    with torch.no_grad():
        parts = [
            f"{name}:{tuple(t.shape)}:{float(t.double().sum()):.10e}:{float(t.double().abs().sum()):.10e}"
            for name, t in model.state_dict().items()
        ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, L, D) over valid steps ``mask`` (B, L); zeros where none is valid."""
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


ENCODERS: Registry[Encoder] = Registry("encoder")


def build_encoder(name: str, spec: ModalitySpec, **kwargs: Any) -> Encoder:
    """Build a registered encoder by name for ``spec`` (see ``polymodal list encoders``)."""
    return ENCODERS.build(name, spec=spec, **kwargs)


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "GroupStats", "build_encoder", "masked_mean"]
