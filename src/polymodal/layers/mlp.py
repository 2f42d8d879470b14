"""A multi-layer perceptron block shared by encoders, fusion modules and heads."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from polymodal.errors import unknown_name_error
from polymodal.layers.dropout import Dropout

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise unknown_name_error("activation", name, list(ACTIVATIONS)) from None


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation (and optional LayerNorm, dropout) between.

    The last layer is a plain linear map: no activation, norm or dropout after it.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden_dim: width of the hidden layers; ``None`` means ``max(in_dim, out_dim)``.
        num_layers: number of linear layers (1 gives a single ``nn.Linear``).
        activation: ``"gelu"``, ``"relu"``, ``"silu"`` or ``"tanh"``.
        dropout: dropout probability after each hidden activation.
        norm: put a LayerNorm before each hidden activation.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int | None = None,
        num_layers: int = 2,
        activation: str = "gelu",
        dropout: float = 0.0,
        norm: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {dropout}")
        hidden = max(in_dim, out_dim) if hidden_dim is None else hidden_dim
        make_activation(activation)  # fail fast on an unknown name
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(d, hidden))
            if norm:
                layers.append(nn.LayerNorm(hidden))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(Dropout(dropout))
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP to the last axis.

        Shape:
            x: (..., in_dim)
            output: (..., out_dim)
        """
        return self.net(x)  # type: ignore[no-any-return]
