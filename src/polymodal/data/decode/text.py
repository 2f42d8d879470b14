"""Text: :func:`decode_text` (a manifest cell or file contents -> the stripped string)."""

from __future__ import annotations

from polymodal.data.decode.errors import DecodeError, _at
from polymodal.data.decode.limits import get_limits, limit_error


def decode_text(value: object, *, where: str = "") -> str:
    """A text cell -> the stripped string.

    Raises:
        LimitError: more than ``max_text_chars`` characters
            (:mod:`~polymodal.data.decode.limits`).
        DecodeError: ``value`` is ``None``, not a ``str`` (e.g. a NaN from a spreadsheet), or
            empty/whitespace only.
    """
    if isinstance(value, str) and len(value) > get_limits().max_text_chars:
        raise limit_error(
            "text",
            None,
            where,
            f"it has {len(value):,} characters",
            "max_text_chars",
            len(value),
            "shorten it, or split it into several examples",
        )
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is None or isinstance(value, str) or (isinstance(value, float) and value != value):
        got = "None" if value is None else ("NaN" if not isinstance(value, str) else repr(value))
        problem = f"empty text (got {got})"
    else:
        problem = f"empty text: expected a str, got {type(value).__name__} {value!r}"
    raise DecodeError(
        f"Cannot decode text{_at(where)}: {problem}. Fix: fill it in, or leave the cell empty "
        "in a manifest to mark the modality missing for this example.",
        where=where,
    )
