"""Group-aware splitting: validation sets are carved from train by speaker/subject/video."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def group_split(
    groups: Sequence[str], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Split example indices so that no group is on both sides.

    Args:
        groups: the group (speaker, subject, video) of each example.
        val_fraction: target fraction of *groups* that go to validation (at least one).
        seed: seeds the permutation of groups (a :class:`torch.Generator`).

    Returns:
        ``(train_indices, val_indices)``, each sorted.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    uniq = sorted(set(groups))
    if len(uniq) < 2:
        raise ValueError(
            f"group_split needs at least 2 distinct groups to hold one out, got {len(uniq)}"
        )
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(uniq), generator=gen).tolist()
    n_val = min(len(uniq) - 1, max(1, round(val_fraction * len(uniq))))
    val_groups = {uniq[i] for i in order[:n_val]}
    train = [i for i, g in enumerate(groups) if g not in val_groups]
    val = [i for i, g in enumerate(groups) if g in val_groups]
    return train, val
