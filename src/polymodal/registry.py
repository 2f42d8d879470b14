"""A small registry of named builder functions (timm-style).

Every family of components (encoders, fusions, data sets, ...) keeps one
:class:`Registry`.  A builder is registered under a name with a one-line
description; :meth:`Registry.build` looks it up and calls it, and an unknown
name fails with the list of valid names and a close-match suggestion.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def unknown_name_error(kind: str, name: object, valid: list[str]) -> ValueError:
    """A ``ValueError`` for an unknown choice, listing the valid ones and a suggestion."""
    msg = f"Unknown {kind} {name!r}. Valid {kind}s: {', '.join(sorted(valid))}."
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    if close:
        msg += f" Did you mean {close[0]!r}?"
    return ValueError(msg)


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    builder: Callable[..., T]
    description: str


class Registry(Generic[T]):
    """Maps names to builder functions of one component family."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str) -> Callable[[F], F]:
        """Decorator: register ``builder`` under ``name`` with a one-line ``description``."""

        def deco(builder: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, builder, description)
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
