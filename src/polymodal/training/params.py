"""What the loop optimises and which random generators a checkpoint keeps.

:func:`param_groups` splits a model's trainable parameters into AdamW's decay and no-decay
groups; :func:`module_generators` finds the :class:`torch.Generator` objects a model holds
(modality dropout's), whose states are not in ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def module_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Every :class:`torch.Generator` held as an attribute by ``model`` or its submodules
    (e.g. a model's modality-dropout generator), keyed ``"<module path>:<attribute>"``.

    Their states are not in ``state_dict``; checkpoints save them so that resuming draws
    the same numbers.
    """
    out: dict[str, torch.Generator] = {}
    for path, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator):
                out[f"{path}:{attr}"] = value
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices/kernels (dim >= 2), none on biases, norms and
    scalars (nanoGPT's rule: the 0-D and 1-D parameters)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


__all__ = ["module_generators", "param_groups"]
