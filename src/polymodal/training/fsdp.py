"""Fully sharded data parallel: ``distributed.parallel: fsdp`` (FSDP2, ``fully_shard``).

Under ``torchrun`` with ``distributed.parallel=fsdp`` each rank keeps only its 1/N slice
of every trainable parameter, of its gradient and of AdamW's two moments; a unit's full
parameters are gathered just while it runs (forward, then again in backward) and freed
after.  For fine-tuning the larger pretrained encoders (``minilm`` with ``freeze: false``
or ``trainable_layers``), where DDP keeps N whole copies of weights and optimiser state.

What is sharded (:func:`shard_units`), bottom up:

* each repeated block with trainable parameters: a MiniLM ``BertLayer``, polymodal's
  :class:`~polymodal.layers.transformer.TransformerBlock` and
  :class:`~polymodal.layers.transformer.CrossAttentionBlock`;
* each modality encoder of the model (``model.encoders[name]``) with trainable parameters;
* then the model itself, which holds what is left (fusion, head, embeddings).

Frozen parameters (``requires_grad=False``: a frozen MiniLM, the frozen blocks of
``trainable_layers``) are not sharded: every rank keeps them whole, as under DDP, so a
frozen encoder's output cache never makes one rank gather weights the other does not.

Everything else is what DDP does (:mod:`polymodal.training.distributed`): the same
global batches cut into the same shares, gradients averaged over the ranks (here by a
reduce-scatter), the loss weighted by each rank's share.  With ``precision: bf16`` the
gathered parameters are bf16 and gradients are reduced in fp32
(``MixedPrecisionPolicy``), under the loop's autocast as before.

Checkpoints stay the one format: :func:`full_weights` and :func:`full_optimizer_state`
gather full tensors onto rank 0's CPU (``get_model_state_dict`` /
``get_optimizer_state_dict``, ``full_state_dict=True, cpu_offload=True``) and the
optimiser state is written as ``optimizer.state_dict()`` writes it (parameters numbered
in the optimiser's order), so ``evaluate`` and ``predict`` load an FSDP run's checkpoint in
one process, and a run resumes under FSDP, DDP or one process alike.

Every rank evaluates (the forward needs every rank's slice), on the whole validation or
test split as one process does; rank 0's metrics are used.  Only a strategy whose
``shardable`` is true trains under FSDP: its loss and its evaluation call the model's
``forward`` (``task: supervised``); the contrastive and context tasks train small heads
on cached features and use DDP.  Every rank must run the same units in a step (always the
case for a :class:`~polymodal.models.MultimodalModel`: every encoder runs on every batch).
``compile: true`` compiles the model before it is sharded (checked on a tiny run: the same
metrics as eager FSDP and as one process).
"""

from __future__ import annotations

import sys
from typing import Any, cast

import torch
from torch import Tensor, nn

from polymodal.checkpoint import check_weights
from polymodal.layers.transformer import CrossAttentionBlock, TransformerBlock


def _block_types() -> tuple[type[nn.Module], ...]:
    """The repeated blocks sharded one by one: polymodal's, and MiniLM's ``BertLayer`` when
    ``transformers`` built one (a model holding a MiniLM has imported it)."""
    types: list[type[nn.Module]] = [TransformerBlock, CrossAttentionBlock]
    bert = sys.modules.get("transformers.models.bert.modeling_bert")
    if bert is not None:
        types.append(bert.BertLayer)
    return tuple(types)


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def shard_units(root: nn.Module) -> list[nn.Module]:
    """The submodules of ``root`` sharded as units of their own, deepest first (the order
    ``fully_shard`` needs): each repeated block and each of ``root.encoders`` that has a
    trainable parameter (see the module docstring).  ``root`` itself is not in the list."""
    blocks = _block_types()
    encoders = getattr(root, "encoders", None)
    chosen = {id(m) for m in encoders.values()} if isinstance(encoders, nn.ModuleDict) else set()
    units: list[tuple[int, nn.Module]] = []
    for name, module in root.named_modules():
        if not name or not _trains(module):
            continue
        if isinstance(module, blocks) or id(module) in chosen:
            units.append((name.count("."), module))
    units.sort(key=lambda u: -u[0])  # stable: deepest first, then in module order
    return [m for _, m in units]


def shard(root: nn.Module, device: torch.device, precision: str) -> None:
    """``fully_shard`` ``root`` in place over all ranks: :func:`shard_units`, then ``root``;
    frozen parameters stay whole.  Rank 0's parameters and buffers are sent to every rank
    first (as ``DistributedDataParallel`` does), so every rank starts from the same model."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    with torch.no_grad():
        for t in [*root.parameters(), *root.buffers()]:
            torch.distributed.broadcast(t.data, src=0)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    mp = MixedPrecisionPolicy()
    if precision == "bf16":  # gathered as bf16, reduced in fp32; inputs cast by autocast
        mp = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
        )
    frozen = {p for p in root.parameters() if not p.requires_grad}
    for module in [*shard_units(root), root]:
        fully_shard(module, mesh=mesh, mp_policy=mp, ignored_params=frozen)


def _options(cpu_offload: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload, strict=True)


def full_weights(root: nn.Module) -> dict[str, Tensor]:
    """``root``'s full ``state_dict`` on rank 0's CPU (``{}`` on the other ranks); every
    rank must call it (it gathers the slices)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    sd = get_model_state_dict(root, options=_options(cpu_offload=True))
    return cast(dict[str, Tensor], dict(sd))


def load_full_weights(root: nn.Module, weights: dict[str, Tensor], source: str) -> None:
    """Load full checkpoint ``weights`` (every rank holds them) into sharded ``root``,
    checked first as a single-process load is (names and shapes)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    check_weights(root, weights, source)  # a DTensor's shape is the full shape
    set_model_state_dict(root, dict[str, Any](weights), options=_options())


def _names(root: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The parameter names in the optimiser's order (its state dict numbers them so)."""
    names = {id(p): n for n, p in root.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def full_optimizer_state(root: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's full state on rank 0's CPU in ``optimizer.state_dict()``'s own
    format (``{}`` on the other ranks); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    sd: dict[str, Any] = dict(
        get_optimizer_state_dict(root, optimizer, options=_options(cpu_offload=True))
    )
    if not sd:
        return {}
    index = {name: i for i, name in enumerate(_names(root, optimizer))}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in sd["param_groups"]]
    return {"state": {index[n]: s for n, s in sd["state"].items()}, "param_groups": groups}


def load_full_optimizer_state(
    root: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a full optimiser state in ``optimizer.state_dict()``'s format (as a run of
    any kind saves it; every rank holds it) into the optimiser of sharded ``root``."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = _names(root, optimizer)
    count = sum(len(g["params"]) for g in state["param_groups"])
    if count != len(names):
        raise ValueError(
            f"it holds the state of {count} parameters, but the optimiser trains {len(names)}"
        )
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    by_name = {"state": {names[int(i)]: s for i, s in state["state"].items()}}
    set_optimizer_state_dict(
        root, optimizer, {**by_name, "param_groups": groups}, options=_options()
    )


__all__ = [
    "full_optimizer_state",
    "full_weights",
    "load_full_optimizer_state",
    "load_full_weights",
    "shard",
    "shard_units",
]
