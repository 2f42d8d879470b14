"""The wording every user-facing error shares: one did-you-mean, one unknown-name message.

Every place that rejects a name (a config key, a registered component, a modality, a
column, a label) words it the same way, through these two functions, so a user meets one
voice (scikit-learn's: what was expected, what was given, the fix) wherever they err.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: object, valid: Iterable[object]) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``valid`` to ``name``, else ``""``.

    Meant to be appended to a message that already lists the valid choices.
    """
    choices = [str(v) for v in valid]
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_name_error(kind: str, name: object, valid: Iterable[object]) -> ValueError:
    """A ``ValueError`` for an unknown choice, listing the valid ones and a suggestion."""
    choices = sorted(str(v) for v in valid)
    return ValueError(
        f"Unknown {kind} {name!r}. Valid {kind}s: {', '.join(choices)}."
        + did_you_mean(name, choices)
    )


__all__ = ["did_you_mean", "unknown_name_error"]
