"""What the loop optimises and which random generators a checkpoint keeps.

:func:`param_groups` splits a model's trainable parameters into AdamW's decay and no-decay
groups, and by learning rate (``optim.lr_scale``, ``optim.layer_decay``); :func:`adamw`
builds the loop's optimiser over them;
:func:`module_generators` finds the :class:`torch.Generator` objects a model holds
(modality dropout's), whose states are not in ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def param_groups(
    model: nn.Module,
    weight_decay: float,
    lr: float | None = None,
    lr_scale: Mapping[str, float] | None = None,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices/kernels (dim >= 2), none on biases, norms and
    scalars (nanoGPT's rule: the 0-D and 1-D parameters), each split further by learning rate.

    Without ``lr_scale`` and ``layer_decay`` there are two groups (decay, no decay) that take
    the optimiser's ``lr``.  Otherwise each parameter's learning rate is
    ``lr * lr_scale(name) * layer_decay ** depth(name)`` and every group carries its ``lr``
    (a schedule then scales each group's own base):

    * ``lr_scale(name)``: the multiplier of the longest key of ``lr_scale`` that is ``name``
      or a dotted prefix of it (``"encoders.transcript"`` covers
      ``encoders.transcript.model.encoder.layer.5.output.dense.weight``); 1 if none is.
    * ``depth(name)``: for a parameter inside a block of an encoder that exposes ordered
      blocks (:meth:`~polymodal.encoders.base.Encoder.layer_blocks`, bottom to top, e.g.
      ``minilm``: embeddings, then the 6 transformer blocks), the block's place counted from
      the top, starting at 1 (the last block gets ``layer_decay``, the embeddings
      ``layer_decay ** 7``); 0 for every other parameter (heads, fusion, projections,
      encoders without blocks), as in BEiT's layer-wise decay.

    Raises:
        ValueError: a key of ``lr_scale`` that matches no trainable parameter (the message
            lists the model's top-level modules), or ``layer_decay`` on a model with no
            encoder that exposes blocks.
    """
    names = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scales = dict(lr_scale or {})
    if lr is None and (scales or layer_decay is not None):
        raise ValueError("param_groups: lr is needed to scale learning rates; pass lr=.")
    unmatched = [k for k in scales if not any(_covers(k, n) for n, _ in names)]
    if unmatched:
        top = sorted({n.split(".", 1)[0] for n, _ in names})
        raise ValueError(
            f"optim.lr_scale: {', '.join(repr(k) for k in unmatched)} matches no trainable "
            f"parameter. Keys are dotted name prefixes from the model's top-level modules "
            f"{top}, e.g. '{top[0] if top else 'encoders'}'; print "
            "model.named_parameters() for the full names."
        )
    depth = _block_depths(model) if layer_decay is not None else {}
    if layer_decay is not None and not depth:
        raise ValueError(
            f"optim.layer_decay={layer_decay} needs an encoder with ordered blocks (e.g. "
            "minilm with trainable_layers or freeze=false); this model has none with "
            "trainable parameters. Remove layer_decay or use optim.lr_scale."
        )
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in names:
        scale = 1.0
        keys = [k for k in scales if _covers(k, name)]
        if keys:
            scale = scales[max(keys, key=len)]
        if layer_decay is not None:
            scale *= layer_decay ** depth.get(id(p), 0)
        groups.setdefault((p.dim() >= 2, scale), []).append(p)
    if not any(decays for decays, _ in groups):  # the decay group exists, even empty
        groups = {(True, 1.0): [], **groups}
    scaled = lr is not None and (bool(scales) or layer_decay is not None)
    out: list[dict[str, Any]] = []
    for is_decay in (True, False):  # decay groups first, then by first parameter
        for (decays, scale), params in groups.items():
            if decays == is_decay:
                group: dict[str, Any] = {
                    "params": params,
                    "weight_decay": weight_decay if decays else 0.0,
                }
                if scaled and lr is not None:
                    group["lr"] = lr * scale
                out.append(group)
    return out


def _covers(prefix: str, name: str) -> bool:
    """Whether the dotted ``prefix`` names ``name`` or a module above it."""
    return name == prefix or name.startswith(prefix + ".")


def _block_depths(model: nn.Module) -> dict[int, int]:
    """``id(parameter)`` -> its block's place from the top (1 = the last block) for the
    parameters inside the ordered blocks of encoders that expose them."""
    out: dict[int, int] = {}
    for module in model.modules():
        blocks = getattr(module, "layer_blocks", None)
        if not callable(blocks):
            continue
        ordered = list(blocks())
        for i, block in enumerate(ordered):
            for p in block.parameters():
                if p.requires_grad:
                    out[id(p)] = len(ordered) - i
    return out


#: Parameter dtypes torch's fused AdamW kernel updates.
FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def adamw(groups: list[dict[str, Any]], lr: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW over ``groups`` (from :func:`param_groups`), fused where every parameter allows.

    torch's fused kernel updates all parameters in one call instead of a dozen small ops per
    tensor (on one CPU thread, MulT's 252 tensors: 1.9 ms a step against 11 ms).  It needs
    plain floating-point tensors on CPU or CUDA; sharded (FSDP) or other devices' parameters
    keep torch's default implementation.
    """
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(
        type(p.data) is torch.Tensor
        and p.device.type in ("cpu", "cuda")
        and p.dtype in FUSED_DTYPES
        for p in params
    )
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


__all__ = ["adamw", "module_generators", "param_groups"]
