"""A small registry of named components (timm-style).

Every family of components (encoders, fusions, data sets, training tasks) keeps one
:class:`Registry`.  A component is registered under a name with a one-line description,
either as a class (its ``__init__`` signature *is* the builder's, so each default is
written once) or as a builder function when building takes more than construction
(loading pretrained weights, assembling a front end and a backbone)::

    @ENCODERS.register("mlp", "MLP for tabular rows and feature vectors", kind="tabular")
    class MLPEncoder(Encoder): ...

:meth:`Registry.build` looks a name up and calls it; an unknown name fails with the list
of valid names and a close-match suggestion.  ``kind`` records what a component accepts
(the modality kind an encoder reads, ``"feature"``/``"decision"`` for fusions): ``polymodal
list`` shows it and the contract tests build inputs from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from polymodal.errors import did_you_mean, unknown_name_error

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component.

    Attributes:
        name: the registered name.
        builder: the class or function that builds it.
        description: one line for ``polymodal list``.
        kinds: what it accepts (modality kinds for encoders); empty when it takes any.
    """

    name: str
    builder: Callable[..., T]
    description: str
    kinds: tuple[str, ...] = ()


class Registry(Generic[T]):
    """Maps names to builders (classes or functions) of one component family."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, description: str, *, kind: str | tuple[str, ...] = ()
    ) -> Callable[[F], F]:
        """Decorator: register a class or builder under ``name``.

        Args:
            name: the name configs and the CLI use.
            description: one line shown by ``polymodal list``.
            kind: what the component accepts, e.g. ``"audio"`` or ``("image", "video")``.
        """
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)

        def deco(builder: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, builder, description, tuple(str(k) for k in kinds))
            return builder

        return deco

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name_error(self.kind, name, list(self._entries)) from None

    def build(self, name: str, /, **kwargs: Any) -> T:
        return self.get(name).builder(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["Entry", "Registry", "did_you_mean", "unknown_name_error"]
