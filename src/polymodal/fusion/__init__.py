"""Feature-level fusion: encoded modalities + presence masks in, one representation out.

Every strategy subclasses :class:`Fusion`, whose constructor takes ``in_dims`` (modality
name -> D of its encoder) followed by the strategy's hyperparameters, and returns
:class:`FusionOutput` ``(features (B, out_dim), weights (B, M) or None)`` from
``forward(inputs, present)``; a model's head maps ``features`` to predictions.  The
classes themselves are registered in :data:`FUSIONS` (``kind="feature"``), so each
default is written once; ``build_fusion("gmu", in_dims, hidden_dim=64)`` builds one by
name.  Importing this package imports every strategy module, which registers it.

Decision-level strategies (``late``, ``hybrid``), which produce logits rather than
features, live in :mod:`polymodal.models.decision`.
"""

from polymodal.fusion import attention as attention  # registers "attention"
from polymodal.fusion import gated as gated  # registers "gmu"
from polymodal.fusion import graph as graph  # registers "graph"
from polymodal.fusion import tensor as tensor  # registers "tensor" and "lowrank"
from polymodal.fusion import transformer as transformer  # mult, coattention, bottleneck
from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, build_fusion, check_fusion_inputs
from polymodal.fusion.concat import EarlyFusion  # registers "early"

__all__ = [
    "FUSIONS",
    "EarlyFusion",
    "Fusion",
    "FusionOutput",
    "build_fusion",
    "check_fusion_inputs",
]
