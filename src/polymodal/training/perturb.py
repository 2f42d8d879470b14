"""Training on perturbed inputs: ``optim.perturb`` of a supervised or context run.

A model trained on clean data meets a damaged modality (a noisy microphone, a transcript
full of ASR errors, a loose sensor) only at test time, where a fused model that leans on the
damaged modality can fall below what the other modality alone would give.  Corruption
training shows it such inputs while it learns: :class:`TrainPerturbation` draws, for each
training batch and each modality, with probability ``prob``, one of the modality's
perturbations (:data:`polymodal.robustness.perturb.PERTURBATIONS`) and a severity uniform in
``[0, max_severity]``, and applies it to that modality of the batch before the encoders
see it, exactly as ``polymodal robustness`` damages the test split (a context run: the
utterances of its batch of videos).

All draws come from one generator seeded by the run's seed (and, under ``torchrun``, the
process's rank, so ranks damage their shards independently) and saved with its checkpoints,
so a resumed run damages the same batches as an uninterrupted one.  Hiding a modality is
left to ``model.modality_dropout``; ``missing`` is therefore not among the defaults (name it
in ``perturbations`` to draw it as well).
"""

from __future__ import annotations

import torch

from polymodal.data.modality import Schema
from polymodal.data.sample import Batch
from polymodal.errors import did_you_mean
from polymodal.robustness.perturb import perturb_batch, perturbations_for
from polymodal.training.config import PerturbConfig

#: Offset of the perturbation generator's seed from the run's seed (the other streams of a
#: run, dropout and data order, use the seed itself).
SEED_OFFSET = 7919


def perturbation_plan(cfg: PerturbConfig, schema: Schema) -> dict[str, list[str]]:
    """Modality -> the perturbations ``cfg`` draws from for it (modalities without any are
    left out), checked against ``schema``.

    Raises:
        ValueError: ``cfg.perturbations`` names a modality the schema lacks, or a
            perturbation that does not accept that modality's kind.
    """
    if not cfg.perturbations:
        plan = {
            m: [p for p in perturbations_for(schema[m].kind) if p != "missing"]
            for m in schema.names
        }
        return {m: names for m, names in plan.items() if names}
    plan = {}
    for modality, names in sorted(cfg.perturbations.items()):
        if modality not in schema.names:
            raise ValueError(
                f"optim.perturb.perturbations names modality {modality!r}, which the data "
                f"does not have; choose from {list(schema.names)}."
                + did_you_mean(modality, schema.names)
            )
        kind = schema[modality].kind
        valid = perturbations_for(kind)
        for name in names:
            if name not in valid:
                raise ValueError(
                    f"optim.perturb.perturbations.{modality} lists {name!r}, which does not "
                    f"apply to a modality of kind {kind.value!r}; choose from {valid}."
                    + did_you_mean(name, valid)
                )
        if names:
            plan[modality] = list(dict.fromkeys(names))
    return plan


class TrainPerturbation:
    """Damages training batches at random (``optim.perturb``; see the module docstring).

    Args:
        cfg: the run's :class:`PerturbConfig` (``prob > 0``).
        schema: the training data's schema (each modality's kind).
        seed: the run's seed.
        rank: this process's rank under ``torchrun`` (0 otherwise).
    """

    def __init__(self, cfg: PerturbConfig, schema: Schema, seed: int, rank: int = 0) -> None:
        self.cfg = cfg
        self.schema = schema
        self.plan = perturbation_plan(cfg, schema)
        self.generator = torch.Generator().manual_seed(seed + SEED_OFFSET * (1 + rank))

    def __call__(self, batch: Batch) -> Batch:
        """``batch`` with each planned modality it carries perturbed with probability
        ``prob`` (the others, targets and ids shared with ``batch``)."""
        g = self.generator
        for modality in sorted(self.plan):  # sorted: the draws do not depend on dict order
            names = self.plan[modality]
            # three draws per modality whatever happens, so the stream stays aligned
            hit, pick, level = torch.rand(3, generator=g).tolist()
            if modality not in batch or hit >= self.cfg.prob:
                continue
            name = names[min(int(pick * len(names)), len(names) - 1)]
            severity = level * self.cfg.max_severity
            batch = perturb_batch(batch, self.schema, modality, name, severity, g)
        return batch

    def generators(self) -> dict[str, torch.Generator]:
        """The generator a strategy checkpoints (its ``generators()`` entry)."""
        return {"perturb:generator": self.generator}


def build_perturbation(
    cfg: PerturbConfig, schema: Schema, seed: int, rank: int = 0
) -> TrainPerturbation | None:
    """The run's :class:`TrainPerturbation`, or ``None`` when ``cfg.prob`` is 0 or nothing
    is planned (the ``perturbations`` are checked against ``schema`` either way)."""
    perturbation = TrainPerturbation(cfg, schema, seed, rank)
    return perturbation if cfg.prob > 0 and perturbation.plan else None


__all__ = ["SEED_OFFSET", "TrainPerturbation", "build_perturbation", "perturbation_plan"]
