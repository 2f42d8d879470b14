"""Fusion strategies: encoded modalities + presence masks in, one representation out.

Every strategy subclasses :class:`Fusion` and registers a builder
``builder(in_dims, num_outputs, **hyper) -> Fusion`` in :data:`FUSIONS`;
``build_fusion("late", in_dims, num_outputs, combine="mean")`` builds one by name.
Importing this package imports every strategy module, which registers it.
"""

from polymodal.fusion import attention as attention  # registers "attention"
from polymodal.fusion import gated as gated  # registers "gmu"
from polymodal.fusion import graph as graph  # registers "graph"
from polymodal.fusion import hybrid as hybrid  # registers "hybrid"
from polymodal.fusion import tensor as tensor  # registers "tensor" and "lowrank"
from polymodal.fusion import transformer as transformer  # mult, coattention, bottleneck
from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, build_fusion, check_fusion_inputs
from polymodal.fusion.concat import EarlyFusion
from polymodal.fusion.late import LateFusion

__all__ = [
    "FUSIONS",
    "EarlyFusion",
    "Fusion",
    "FusionOutput",
    "LateFusion",
    "build_fusion",
    "check_fusion_inputs",
]
