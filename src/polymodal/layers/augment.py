"""What every training-time augmentation of an encoder shares: a seeded generator, the
checks of its strengths, and the builder from an encoder's ``augment`` mapping.

An :class:`Augment` holds no parameters.  Its ``generator`` (a CPU
:class:`torch.Generator`) is found by :func:`polymodal.training.params.module_generators`,
so its state travels in a run's checkpoints, and
:func:`polymodal.models.build.build_model` seeds every :class:`Augment` of a model from the
run's seed.  The encoder that holds one applies it in training mode only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from polymodal.errors import unknown_name_error


class Augment(nn.Module):
    """Base of the augmentations an encoder holds (``augment={...}``).

    Subclasses set :attr:`defaults` (the keys of their ``augment`` mapping, all off),
    :attr:`example` (a mapping shown in error messages), and :attr:`active`.

    Args:
        seed: the generator's seed.
    """

    #: The keys of an ``augment`` mapping and their defaults (all off).
    defaults: ClassVar[dict[str, Any]] = {}
    #: An example ``augment`` mapping, for messages.
    example: ClassVar[str] = ""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(int(seed))

    def manual_seed(self, seed: int) -> None:
        """Restart the generator from ``seed``."""
        self.generator.manual_seed(int(seed))

    @property
    def active(self) -> bool:
        """Whether any transform has a non-zero strength."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        on = {k: getattr(self, k) for k in self.defaults if getattr(self, k) != self.defaults[k]}
        return ", ".join(f"{k}={v}" for k, v in on.items())


def check_number(name: str, value: object, low: float, high: float) -> float:
    """``value`` as a float, unless it is not a number in ``[low, high]`` (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(
            f"The {name!r} augmentation must be a number in [{low}, {high}]; got {value!r}."
        )
    return float(value)


def check_count(name: str, value: object) -> int:
    """``value``, unless it is not an int >= 0 (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"The {name!r} augmentation must be an int >= 0; got {value!r}.")
    return value


A = TypeVar("A", bound=Augment)


def build_from_mapping(
    cls: type[A], augment: Mapping[str, Any] | None, encoder: str, **wired: Any
) -> A | None:
    """``cls(**augment, **wired)`` for an encoder's ``augment`` parameter (``None``: none).

    ``wired`` are arguments the encoder passes itself (e.g. the channel count), not keys a
    user may set.

    Raises:
        ValueError: an unknown key (listing the valid ones) or a value out of range, naming
            the encoder's ``augment`` parameter.
        TypeError: ``augment`` is not a mapping.
    """
    if augment is None:
        return None
    if not isinstance(augment, Mapping):
        raise TypeError(
            f"The 'augment' parameter of {encoder} must be a mapping of augmentation names to "
            f"strengths (e.g. {cls.example}) or null; got {type(augment).__name__}."
        )
    for key in augment:
        if key not in cls.defaults:
            raise unknown_name_error(f"{encoder} augment key", key, cls.defaults)
    try:
        return cls(**augment, **wired)
    except ValueError as e:
        raise ValueError(f"{encoder} augment: {e}") from None


__all__ = ["Augment", "build_from_mapping", "check_count", "check_number"]
