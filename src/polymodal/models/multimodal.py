"""The multimodal predictor: per-modality encoders, a fusion, a head, composed.

``encoders -> fusion -> head`` for a feature-level fusion (the head reads the fused
features); ``encoders -> decision-level fusion`` for ``late``/``hybrid``, which predict the
logits themselves (:mod:`polymodal.models.decision`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.data.modality import TASKS, ModalityKind
from polymodal.data.sample import Batch, ModalityBatch
from polymodal.encoders.base import Encoder
from polymodal.errors import unknown_name_error
from polymodal.fusion.base import Fusion
from polymodal.models.decision import DecisionFusion
from polymodal.outputs import DecisionOutput, EncoderOutput, FusionOutput, ModelOutput

# Dimensions of a batch's ``values`` per kind, as collate lays them out (B first).
_BATCH_LAYOUT: dict[ModalityKind, tuple[tuple[int, ...], str]] = {
    ModalityKind.IMAGE: ((4,), "(B, 3, H, W)"),
    ModalityKind.AUDIO: ((2,), "(B, T)"),
    ModalityKind.VIDEO: ((5,), "(B, T, 3, H, W)"),
    ModalityKind.TIMESERIES: ((3,), "(B, T, C)"),
    ModalityKind.TABULAR: ((2,), "(B, D)"),
    ModalityKind.FEATURES: ((2, 3), "(B, D) or (B, T, D)"),
}


class MultimodalModel(nn.Module):
    """Encoders per modality -> fusion -> head, composed from modules already built.

    ``forward(batch)`` checks the batch, hides modalities at random while training (modality
    dropout), encodes each modality in sorted name order, fuses the encodings with their
    presence masks and applies the head.

    Args:
        encoders: modality name -> :class:`Encoder`; must cover exactly ``fusion.names``, and
            each encoder's ``out_dim`` must match ``fusion.in_dims``.
        fusion: a built :class:`~polymodal.fusion.base.Fusion` (feature level) or
            :class:`~polymodal.models.decision.DecisionFusion` (decision level).
        head: maps the fused (B, fusion.out_dim) to (B, num_outputs) logits; ``None`` means
            a ``nn.Linear``.  A decision-level fusion takes no head.
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``.
        num_outputs: K, logits per example (1 for regression).
        modality_dropout: modality name -> probability in [0, 1) of hiding that modality
            from a training example; see :meth:`drop_modalities`.
        seed: seed of the ``torch.Generator`` that draws the modality dropout.
    """

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        fusion: Fusion | DecisionFusion,
        head: nn.Module | None,
        task: str,
        num_outputs: int,
        modality_dropout: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise unknown_name_error("task", task, list(TASKS))
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(f"num_outputs must be a positive int, got {num_outputs!r}.")
        if task == "regression" and num_outputs != 1:
            raise ValueError(
                f"task='regression' predicts one value per example, so num_outputs must be 1; "
                f"got {num_outputs}."
            )
        if not isinstance(fusion, Fusion | DecisionFusion):
            raise TypeError(
                f"fusion must be a polymodal Fusion or DecisionFusion, got {type(fusion).__name__}."
            )
        if sorted(encoders) != fusion.names:
            raise ValueError(
                f"The encoders cover modalities {sorted(encoders)}, but the fusion was built "
                f"for {fusion.names}; build the fusion with in_dims for exactly the encoders' "
                "modalities."
            )
        for name, enc in encoders.items():
            if not isinstance(enc, nn.Module):
                raise TypeError(
                    f"encoders[{name!r}] must be an nn.Module (an Encoder), got "
                    f"{type(enc).__name__}."
                )
            out_dim = getattr(enc, "out_dim", None)
            if out_dim is not None and out_dim != fusion.in_dims[name]:
                raise ValueError(
                    f"encoders[{name!r}].out_dim is {out_dim}, but the fusion expects "
                    f"in_dims[{name!r}] = {fusion.in_dims[name]}; build the fusion with "
                    "in_dims from the encoders' out_dim."
                )
        decision = isinstance(fusion, DecisionFusion)
        if decision and fusion.num_outputs != num_outputs:
            raise ValueError(
                f"Decision-level fusion {type(fusion).__name__} outputs {fusion.num_outputs} "
                f"logits, but num_outputs is {num_outputs}; build it with "
                f"num_outputs={num_outputs}."
            )
        if decision and head is not None:
            raise ValueError(
                f"Decision-level fusion {type(fusion).__name__} predicts the logits itself; "
                "pass head=None."
            )
        drop = dict(modality_dropout or {})
        if len(encoders) == 1 and any(p > 0 for p in drop.values()):
            raise ValueError(
                f"modality_dropout={drop} has no effect on a model with one modality: an "
                "example never loses all of its modalities. Remove modality_dropout."
            )
        for name, p in drop.items():
            if name not in encoders:
                raise unknown_name_error("modality_dropout modality", name, list(encoders))
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
                raise ValueError(
                    f"modality_dropout[{name!r}] must be a probability in [0, 1), got {p!r}."
                )

        self.encoders = nn.ModuleDict({n: encoders[n] for n in sorted(encoders)})
        self.fusion = fusion
        self.decision_level = decision
        self.head: nn.Module | None = (
            None
            if decision
            else (head if head is not None else nn.Linear(fusion.out_dim, num_outputs))
        )
        self.task = task
        self.num_outputs = num_outputs
        self.names: list[str] = list(self.encoders)
        self.modality_dropout: dict[str, float] = {n: float(p) for n, p in sorted(drop.items())}
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ checks

    def check_batch(self, batch: Batch) -> int:
        """Raise ValueError unless ``batch`` has every modality this model needs, laid out
        as its encoder's kind expects; return the batch size B."""
        if not isinstance(batch, Batch):
            raise TypeError(
                f"MultimodalModel expects a polymodal Batch (from collate), got "
                f"{type(batch).__name__}."
            )
        missing = [n for n in self.names if n not in batch.modalities]
        if missing:
            raise ValueError(
                f"The batch lacks modality {missing[0]!r}, which this model needs (it encodes "
                f"{self.names}); the batch has {list(batch.modalities)}. Collate with the "
                "schema the model was built for; mark unavailable examples present=False."
            )
        b = batch.batch_size
        for name in self.names:
            mb = batch.modalities[name]
            kind = getattr(self.encoders[name], "kind", None)
            _check_modality(name, kind, mb, b)
        return b

    # ------------------------------------------------------------------ modality dropout

    def drop_modalities(self, batch: Batch, groups: Tensor | None = None) -> Batch:
        """Hide modalities at random, as training-time modality dropout does.

        Each present modality m of each example is hidden (``present=False``, values
        zero-filled, exactly like a modality missing in the data) with probability
        ``modality_dropout[m]``, drawn from ``self.generator``.  An example never loses all
        of its present modalities: if every one was drawn for dropping, one of them, chosen
        uniformly at random, is kept (so the realised rate is slightly below p when the
        other modalities are dropped too).  Modalities the model does not encode pass
        through unchanged.

        ``groups`` (B,) long, group indices 0..G-1: the examples of one group lose a
        modality together (one draw per group and modality), as when a sensor fails for a
        whole recording; ``None``: each example on its own.
        """
        if not self.modality_dropout:
            return batch
        b, m = batch.batch_size, len(self.names)
        pres = torch.stack([batch[n].present for n in self.names], dim=1)  # (B, M)
        dev = pres.device
        if groups is not None and (
            groups.shape != (b,) or groups.is_floating_point() or bool((groups < 0).any())
        ):
            raise ValueError(
                f"drop_modalities: groups must be (B,) = ({b},) integer group indices "
                f">= 0, got {tuple(groups.shape)} {groups.dtype} (min "
                f"{int(groups.min()) if groups.numel() else 'none'})."
            )
        # one draw per example, or per group (its examples share it)
        index = None if groups is None else groups.long().to(dev)
        units = b if index is None else int(index.max()) + 1

        def draw() -> Tensor:  # (B, M), drawn on the CPU generator; never waits on a GPU
            r = torch.rand((units, m), generator=self.generator).to(dev, non_blocking=True)
            return r if index is None else r[index]

        p = torch.tensor([self.modality_dropout.get(n, 0.0) for n in self.names])
        p = p.to(dev, non_blocking=True)
        keep = pres & (draw() >= p)  # (B, M)
        lost_all = pres.any(dim=1) & ~keep.any(dim=1)  # (B,)
        # a random present modality to keep (a group that lost everything keeps one together)
        score = draw().masked_fill(~pres, -1.0)
        rescue = torch.zeros_like(keep)
        rescue[torch.arange(b, device=dev), score.argmax(dim=1)] = True  # a random present one
        keep |= rescue & lost_all[:, None]
        mods = dict(batch.modalities)
        for i, name in enumerate(self.names):
            if self.modality_dropout.get(name, 0.0) > 0.0:
                mods[name] = mods[name].with_present(keep[:, i])
        return Batch(mods, batch.target, batch.ids)

    # ------------------------------------------------------------------ forward

    def forward(self, batch: Batch, dropout_groups: Tensor | None = None) -> ModelOutput:
        """Predict from a collated batch.

        Args:
            batch: a :class:`Batch` holding (at least) every modality in ``self.names``.
            dropout_groups: (B,) group indices for training-time modality dropout: the
                examples of a group lose a modality together (:meth:`drop_modalities`).

        Shape:
            - batch[m].values: per kind, see :class:`~polymodal.data.modality.ModalityKind`
            - batch[m].present: (B,)
            - output.logits: (B, K); (B,) for regression
            - output.features: (B, D), D = ``fusion.out_dim`` (``None`` for decision level)
            - output.modality_logits[m]: like ``logits``
            - output.weights: (B, M)
        """
        self.check_batch(batch)
        if self.training and self.modality_dropout:
            batch = self.drop_modalities(batch, dropout_groups)
        encoded: dict[str, EncoderOutput] = {}
        present: dict[str, Tensor] = {}
        for name in self.names:  # sorted
            mb = batch.modalities[name]
            encoder = self.encoders[name]
            groups = getattr(encoder, "uses_groups", False)  # per-speaker statistics, by id
            encoded[name] = encoder(mb, ids=batch.ids) if groups else encoder(mb)
            present[name] = mb.present.to(torch.bool)
        return self.fuse(encoded, present)

    def fuse(
        self, encoded: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]
    ) -> ModelOutput:
        """The second half of :meth:`forward`: fuse encodings and apply the head.

        With other ``present`` masks than the encoders saw, this predicts from a subset of
        the modalities without encoding them again (``optim.balance=unimodal`` reads each
        modality alone this way): the fusions read an absent modality only through its
        mask, so the result equals :meth:`forward` on the batch with those masks.

        Shape:
            - encoded[m]: the encoder's output; present[m]: (B,) bool
            - return: as :meth:`forward`
        """
        out = self.fusion(dict(encoded), dict(present))
        b = next(iter(present.values())).shape[0]
        features: Tensor | None = None
        modality_logits: dict[str, Tensor] | None = None
        if isinstance(out, DecisionOutput):
            logits, modality_logits = out.logits, out.modality_logits  # (B, K)
        else:
            assert isinstance(out, FusionOutput) and self.head is not None  # feature level
            features = out.features  # (B, D)
            logits = self.head(features)  # (B, K)
        if tuple(logits.shape) != (b, self.num_outputs):
            raise ValueError(
                f"The {'fusion' if self.decision_level else 'head'} produced logits of shape "
                f"{tuple(logits.shape)}, expected ({b}, {self.num_outputs}); make it map "
                f"(B, {self.fusion.out_dim}) to (B, {self.num_outputs})."
            )
        if self.task == "regression":
            logits = logits.squeeze(-1)  # (B,)
            if modality_logits is not None:
                modality_logits = {k: v.squeeze(-1) for k, v in modality_logits.items()}
        return ModelOutput(logits, features, modality_logits, out.weights)

    @torch.no_grad()
    def predict(self, batch: Batch, threshold: float = 0.5) -> Tensor:
        """Predictions in eval mode (the module's mode is restored afterwards).

        Returns class indices (B,) long for classification, values (B,) float for
        regression, and a multi-hot (B, K) long (``sigmoid(logit) >= threshold``) for
        multilabel.
        """
        was_training = self.training
        self.eval()
        try:
            logits = self(batch).logits
        finally:
            self.train(was_training)
        if self.task == "classification":
            return logits.argmax(dim=-1)
        if self.task == "multilabel":
            return (torch.sigmoid(logits) >= threshold).long()
        return logits


def _check_modality(name: str, kind: object, mb: ModalityBatch, b: int) -> None:
    """Check one modality's entry layout against its encoder's ``kind``."""
    if not isinstance(mb, ModalityBatch):
        raise TypeError(f"batch[{name!r}] must be a ModalityBatch, got {type(mb).__name__}.")
    present = mb.present
    if not isinstance(present, Tensor) or tuple(present.shape) != (b,):
        got = tuple(present.shape) if isinstance(present, Tensor) else type(present).__name__
        raise ValueError(
            f"Modality {name!r}: present must be a ({b},) bool tensor (one flag per example), "
            f"got {got}."
        )
    values = mb.values
    expects_text = kind is ModalityKind.TEXT
    if isinstance(values, list):
        if isinstance(kind, ModalityKind) and not expects_text:
            raise ValueError(
                f"Modality {name!r}: its encoder expects {kind.value!r} values of shape "
                f"{_BATCH_LAYOUT[kind][1]}, got a list of strings."
            )
        if len(values) != b:
            raise ValueError(
                f"Modality {name!r} (kind 'text'): expected a list of {b} strings, got "
                f"{len(values)}."
            )
        return
    if expects_text:
        raise ValueError(
            f"Modality {name!r} (kind 'text'): expected a list of {b} strings, got a tensor "
            f"of shape {tuple(values.shape)}."
        )
    if values.shape[:1] != (b,):
        raise ValueError(
            f"Modality {name!r}: expected batch size {b} (the batch has {b} ids), got values "
            f"of shape {tuple(values.shape)}."
        )
    if isinstance(kind, ModalityKind) and kind in _BATCH_LAYOUT:
        ndims, layout = _BATCH_LAYOUT[kind]
        if values.dim() not in ndims:
            raise ValueError(
                f"Modality {name!r} (kind {kind.value!r}): expected values of shape {layout} "
                f"({' or '.join(map(str, ndims))} dims), got shape {tuple(values.shape)}. "
                "Check the decoder, the schema, or the encoder chosen for this modality."
            )


__all__ = ["ModelOutput", "MultimodalModel"]
