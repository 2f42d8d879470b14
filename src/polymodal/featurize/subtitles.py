"""Sidecar subtitles: :func:`read_subtitles` reads SRT and WebVTT files into utterances."""

from __future__ import annotations

import html
import os
import re
import unicodedata
from pathlib import Path

from polymodal.featurize.transcript import Utterance, Word

SUBTITLE_SUFFIXES = (".srt", ".vtt")
_TIME = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # HTML-like tags and ASS overrides ({\an8})


def _time(text: str, where: str, fix: str) -> float:
    m = _TIME.match(text)
    if m is None:
        raise ValueError(f"{where}: {text!r} is not a time. Fix: {fix}")
    h, mi, s, frac = m.groups()
    if int(mi) >= 60 or int(s) >= 60:
        raise ValueError(f"{where}: {text!r} has minutes or seconds >= 60. Fix: {fix}")
    return int(h or 0) * 3600 + int(mi) * 60 + int(s) + int(frac) / 10 ** len(frac)


def _timing(line: str, where: str, fmt: str) -> tuple[float, float] | None:
    """``(start, end)`` of a ``start --> end [settings]`` line; ``None`` if it has no arrow."""
    if "-->" not in line:
        return None
    fix = f"write the cue's times as '{fmt} --> {fmt}'."
    left, _, right = line.partition("-->")
    parts = right.split()
    if not left.strip() or not parts:
        raise ValueError(f"{where}: expected 'start --> end', got {line.strip()!r}. Fix: {fix}")
    start, end = _time(left.strip(), where, fix), _time(parts[0], where, fix)
    if end < start:
        raise ValueError(
            f"{where}: the cue ends ({parts[0]}) before it starts ({left.strip()}). "
            "Fix: swap or correct the two times."
        )
    return start, end


def _token(word: str) -> str:
    """A token without the punctuation and symbols around it ('' when nothing is left)."""
    i, j = 0, len(word)
    while i < j and unicodedata.category(word[i])[0] in "PS":
        i += 1
    while j > i and unicodedata.category(word[j - 1])[0] in "PS":
        j -= 1
    return word[i:j]


def _cue(start: float, end: float, lines: list[str]) -> Utterance | None:
    """An utterance whose words split ``[start, end]`` in proportion to their length."""
    text = " ".join(html.unescape(_TAG.sub("", " ".join(lines))).split())
    if not text:
        return None
    tokens = [t for t in (_token(w) for w in text.split()) if t]
    total = sum(len(t) for t in tokens)
    words, done = [], 0
    for t in tokens:
        a = start + (end - start) * done / total
        done += len(t)
        words.append(Word(a, start + (end - start) * done / total, t))
    return Utterance(start, end, text, words)


def _read_lines(p: Path) -> list[str]:
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{p}:{line}: the file is not UTF-8 text (byte {data[e.start]:#04x}). "
            "Fix: re-save the subtitles as UTF-8 (e.g. iconv -f cp1252 -t utf-8)."
        ) from None
    return re.split(r"\r\n|\r|\n", text)


def _blocks(lines: list[str], first: int = 0) -> list[tuple[int, list[str]]]:
    """Blank-line separated blocks: (0-based index of the block's first line, its lines)."""
    out: list[tuple[int, list[str]]] = []
    block: list[str] = []
    for i in range(first, len(lines)):
        if lines[i].strip():
            if not block:
                out.append((i, block))
            block.append(lines[i].rstrip())
        else:
            block = []
    return out


def _cue_text(p: Path, at: int, lines: list[str]) -> list[str]:
    """The payload lines of a cue starting at 0-based line ``at``; no timing line inside."""
    for k, line in enumerate(lines):
        if "-->" in line:
            raise ValueError(
                f"{p}:{at + k + 1}: a new cue starts here without the empty line that "
                f"separates cues. Fix: put an empty line before {line.strip()!r}."
            )
    return lines


def read_subtitles(path: str | os.PathLike[str]) -> list[Utterance]:
    """Read an SRT (``.srt``) or WebVTT (``.vtt``) subtitle file.

    Times may be ``HH:MM:SS,mmm``, ``HH:MM:SS.mmm`` or ``MM:SS.mmm``; cue numbers (SRT) and
    identifiers, NOTE, STYLE and REGION blocks (WebVTT) and cue settings are skipped;
    styling tags (``<i>``, ``<v Name>``, ``<c.red>``, ``{\\an8}``, ...) are stripped and HTML
    entities unescaped; a cue's lines are joined with spaces.  A UTF-8 byte-order mark and
    CRLF or CR line ends are accepted.

    Each cue's words (whitespace tokens without the punctuation around them) get times spread
    over the cue in proportion to their number of characters.  Cues left without text are
    dropped.

    Returns:
        One :class:`Utterance` per cue, sorted by start time (cues may overlap).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: another extension, a file that is not UTF-8, or a malformed cue; the
            message names the file, the line and the fix.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUBTITLE_SUFFIXES:
        raise ValueError(
            f"Subtitle file {str(p)!r} must end in one of {list(SUBTITLE_SUFFIXES)}; got "
            f"{suffix or 'no extension'!r}. Fix: convert it to SRT or WebVTT (e.g. with ffmpeg)."
        )
    if not p.is_file():
        raise FileNotFoundError(f"Subtitle file {str(p)!r} does not exist; pass its path.")
    lines = _read_lines(p)
    cues = _read_vtt(p, lines) if suffix == ".vtt" else _read_srt(p, lines)
    return sorted((c for c in cues if c is not None), key=lambda u: (u.start, u.end))


def _read_srt(p: Path, lines: list[str]) -> list[Utterance | None]:
    fmt = "HH:MM:SS,mmm"
    out = []
    for at, block in _blocks(lines):
        where = f"{p}:{at + 1}"
        timing = _timing(block[0], where, fmt)
        body = 1
        if timing is None:
            if not block[0].strip().isdigit():
                raise ValueError(
                    f"{where}: expected a cue number or a timing line '{fmt} --> {fmt}', "
                    f"got {block[0].strip()!r}. Fix: start each cue with its number and its "
                    "times, with an empty line between cues."
                )
            timing = _timing(block[1], f"{p}:{at + 2}", fmt) if len(block) > 1 else None
            if timing is None:
                raise ValueError(
                    f"{p}:{at + 2}: expected the timing line '{fmt} --> {fmt}' after cue "
                    f"number {block[0].strip()}. Fix: add the cue's times."
                )
            body = 2
        out.append(_cue(*timing, _cue_text(p, at + body, block[body:])))
    return out


def _read_vtt(p: Path, lines: list[str]) -> list[Utterance | None]:
    fmt = "HH:MM:SS.mmm"
    if not re.match(r"^WEBVTT(?:[ \t].*)?$", lines[0]):
        raise ValueError(
            f"{p}:1: a WebVTT file starts with the line 'WEBVTT', got {lines[0][:40]!r}. "
            "Fix: add that header line (or rename an SRT file to .srt)."
        )
    header_end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    for i in range(1, header_end):
        if "-->" in lines[i]:
            raise ValueError(
                f"{p}:{i + 1}: a cue starts inside the WEBVTT header. Fix: put an empty line "
                "after the header."
            )
    out = []
    for at, block in _blocks(lines, header_end):
        if re.match(r"^(NOTE|STYLE|REGION)(?:[ \t]|$)", block[0]):
            continue
        timing = _timing(block[0], f"{p}:{at + 1}", fmt)
        body = 1
        if timing is None:  # a cue identifier, then the times
            timing = _timing(block[1], f"{p}:{at + 2}", fmt) if len(block) > 1 else None
            if timing is None:
                raise ValueError(
                    f"{p}:{at + 1}: expected a cue (an optional identifier line, then "
                    f"'{fmt} --> {fmt}'), got {block[0].strip()!r}. Fix: add the cue's "
                    "times, or separate blocks with an empty line."
                )
            body = 2
        out.append(_cue(*timing, _cue_text(p, at + body, block[body:])))
    return out
