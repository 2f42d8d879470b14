"""Text: :func:`decode_text` (a manifest cell or file contents -> the stripped string)."""

from __future__ import annotations

from polymodal.data.decode.errors import DecodeError, _at


def decode_text(value: object, *, where: str = "") -> str:
    """A text cell -> the stripped string.

    Raises:
        DecodeError: ``value`` is ``None``, not a ``str`` (e.g. a NaN from a spreadsheet), or
            empty/whitespace only.
    """
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
