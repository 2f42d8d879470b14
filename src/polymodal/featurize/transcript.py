"""Transcripts: :class:`Word`, :class:`Utterance`, grouping words into utterances
(:func:`utterances_from_words`) and the word error rate (:func:`word_error_rate`).

Pure Python (no speech package): subtitles (:mod:`polymodal.featurize.subtitles`) and speech
recognition (:mod:`polymodal.featurize.words`) both produce these.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Word:
    """One word and its span in seconds, ``[start, end)``."""

    start: float
    end: float
    text: str


@dataclass
class Utterance:
    """A stretch of speech: a subtitle cue or a speech segment, and the words inside it.

    Attributes:
        start, end: its span in seconds.
        text: the words as one string ('' when none were recognised).
        words: its words in time order.
    """

    start: float
    end: float
    text: str
    words: list[Word]


def utterances_from_words(
    words: Sequence[Word], segments: Sequence[tuple[float, float]]
) -> list[Utterance]:
    """Group words into utterances, one per speech segment.

    A word belongs to the segment that contains its midpoint; a word outside every segment
    goes to the nearest one (the earlier on a tie), whose utterance then stretches to cover
    it.  A segment without words is **kept** as an utterance with empty text: the result
    lines up one to one with ``segments`` (and so with per-segment features such as speaker
    embeddings), and speech nobody recognised still carries voice and face cues.  With no
    segments, all words form one utterance (none when there are no words either).

    Args:
        words: recognised words, in any order.
        segments: ``(start, end)`` seconds, ``start <= end``, sorted by start (they may
            overlap: a midpoint in several goes to the first).

    Returns:
        ``len(segments)`` utterances in segment order (or the single one above).
    """
    spans = [(float(a), float(b)) for a, b in segments]
    for i, (a, b) in enumerate(spans):
        if not (math.isfinite(a) and math.isfinite(b) and a <= b):
            raise ValueError(f"segments[{i}] = {segments[i]!r} must be finite with start <= end.")
        if i and a < spans[i - 1][0]:
            raise ValueError(
                f"segments must be sorted by start; segments[{i}] = {segments[i]!r} starts "
                f"before segments[{i - 1}] = {segments[i - 1]!r}. Fix: sorted(segments)."
            )
    ordered = sorted(words, key=lambda w: (w.start, w.end))
    if not spans:
        if not ordered:
            return []
        return [_utterance(ordered[0].start, max(w.end for w in ordered), ordered)]
    groups: list[list[Word]] = [[] for _ in spans]
    for w in ordered:
        mid = (w.start + w.end) / 2
        gaps = [max(a - mid, mid - b, 0.0) for a, b in spans]
        groups[gaps.index(min(gaps))].append(w)
    return [
        _utterance(min([a, *(w.start for w in g)]), max([b, *(w.end for w in g)]), g)
        for (a, b), g in zip(spans, groups, strict=True)
    ]


def _utterance(start: float, end: float, words: list[Word]) -> Utterance:
    return Utterance(start, end, " ".join(w.text for w in words), list(words))


def _normalize(text: str) -> list[str]:
    """Lower-case words without punctuation: apostrophes vanish, other marks split words."""
    out = []
    for ch in text.casefold():
        cat = unicodedata.category(ch)
        if ch in "'’`":
            continue
        out.append(" " if cat[0] in "PS" else ch)
    return "".join(out).split()


def _edits(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, deletions, insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1]


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words.

    Case and punctuation are ignored (``"Don't, Stop!"`` equals ``"dont stop"``).  Given two
    lists of transcripts (same length), the corpus rate: all edits over all reference words.

    Returns:
        The rate (0 is perfect; it exceeds 1 when the hypothesis inserts many words); 0.0 when
        both are empty.

    Raises:
        ValueError: the reference has no words but the hypothesis has some (the rate is
            undefined), or the lists differ in length.
    """
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if isinstance(reference, str) != isinstance(hypothesis, str) or len(refs) != len(hyps):
        raise ValueError(
            "Pass two strings, or two lists of transcripts of the same length; got "
            f"{len(refs)} reference(s) and {len(hyps)} hypothesis(es)."
        )
    errors = n = 0
    for r, h in zip(refs, hyps, strict=True):
        ref, hyp = _normalize(r), _normalize(h)
        errors += _edits(ref, hyp)
        n += len(ref)
    if n == 0:
        if errors:
            raise ValueError(
                "The reference has no words, so the word error rate of a non-empty "
                "hypothesis is undefined."
            )
        return 0.0
    return errors / n
