"""Reading the files of a checkpoint folder, each checked before it is trusted.

:func:`polymodal.checkpoint.load_checkpoint` reads a folder through these functions.  Each
checks its file (presence, size, header, dtypes, finite values) and, when the file fails,
raises a :class:`CheckpointError` (a ``ValueError``) that names the file (and the tensor
or key), says what is wrong and what to do.  No error of safetensors, torch or pickle
reaches the user as it is: a trainer state that a safe load refuses in particular is never
offered to be loaded unsafely.
"""

from __future__ import annotations

import json
import math
import pickle
import types
import typing
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

# safetensors dtypes and their sizes in bytes
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_MAX_HEADER = 100_000_000  # safetensors' own limit
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupt, tampered with or holds values no
    model should load (NaN, integers for floating-point weights); the message names it.

    Also raised for the other files polymodal writes next to a model and reads back (an
    embeddings folder's, an index's ``source.json``)."""


def damaged_advice(folder: Path) -> str:
    """What to do about a damaged checkpoint folder."""
    return (
        "Use another checkpoint of the run (its checkpoints/best or checkpoints/last) or "
        f"train again, and delete {folder} so that it is not read again."
    )


def read_text(file: Path, advice: str | None = None) -> str:
    """A text file of a checkpoint, refused when empty or not UTF-8.

    ``advice`` ends the message (default: :func:`damaged_advice` of its folder); pass
    another for files polymodal writes outside checkpoints (an index's ``source.json``).
    """
    advice = damaged_advice(file.parent) if advice is None else advice
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(
            f"{file} is not UTF-8 text; it was damaged or replaced. {advice}"
        ) from None
    if not text.strip():
        raise CheckpointError(
            f"{file} is empty: it was cut short while being written or copied. {advice}"
        )
    return text


def read_json(file: Path, advice: str | None = None) -> Any:
    """A JSON file polymodal wrote, refused (named) when empty, not UTF-8 or not JSON."""
    advice = damaged_advice(file.parent) if advice is None else advice
    text = read_text(file, advice)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{file} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            f"it was cut short or modified. {advice}"
        ) from None


def read_json_object(file: Path, advice: str | None = None) -> dict[str, Any]:
    """A JSON file of a checkpoint that must hold an object (``state.json``, ...)."""
    data = read_json(file, advice)
    if not isinstance(data, dict):
        advice = damaged_advice(file.parent) if advice is None else advice
        raise CheckpointError(
            f"{file} must hold a JSON object, got {type(data).__name__} {_short(data)}. " + advice
        )
    return data


class _StateFields:
    """The types of the loop's ``state.json`` fields (``LoopState``'s; any may be absent)."""

    epoch: int
    step_in_epoch: int
    global_step: int
    best: float | None
    best_loss: float | None
    best_epoch: int
    bad_epochs: int
    history: list[dict[str, Any]]
    loss_sum: float
    loss_count: int
    seconds: float
    finished: bool
    monitor: str


def check_state_types(state: dict[str, Any], file: Path) -> None:
    """Refuse a ``state.json`` whose known fields have the wrong JSON type (every reader,
    not only a resumed run: a damaged state means a damaged checkpoint)."""
    check_fields(state, _StateFields, file)


def read_weights(file: Path) -> dict[str, Tensor]:
    """``model.safetensors``: its header checked against its size, every floating-point
    tensor finite."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{file} {what}. {damaged_advice(file.parent)}")

    size = file.stat().st_size
    if size < 8:
        raise bad(f"is truncated: it has {size} bytes, fewer than a safetensors header's 8")
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > _MAX_HEADER:
            raise bad(
                "is not a safetensors weights file: its first 8 bytes do not give a header "
                f"length (they read {n})"
            )
        if n > size - 8:
            raise bad(
                f"is truncated: it has {size} bytes, but its header alone needs {8 + n} (it "
                "was cut short while being written or copied)"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError:  # invalid UTF-8 or JSON
        raise bad("is not a safetensors weights file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("is not a safetensors weights file: its header is not a JSON object")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        span = _tensor_bytes(entry)
        if span is None:
            raise bad(f"has an invalid header entry for tensor {key!r}: {_short(entry)}")
        end = max(end, span)
    data = size - 8 - n
    if data < end:
        raise bad(
            f"is truncated: it has {size} bytes, but its header describes {8 + n + end} "
            "(it was cut short while being written or copied)"
        )
    if data > end:
        raise bad(f"has {data - end} bytes after its last tensor; it was modified")
    try:
        weights = load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise bad(f"cannot be read as safetensors ({exc})") from None
    for key, t in weights.items():
        if t.is_floating_point():
            finite = torch.isfinite(t if t.element_size() > 1 else t.float())
            if not bool(finite.all()):
                raise bad(
                    f"holds {int((~finite).sum())} NaN or infinite value(s) in tensor {key!r} "
                    f"(of {t.numel()}); a model with such weights predicts from NaN "
                    "probabilities. The file was damaged or modified, or the run diverged"
                )
    return weights


def _tensor_bytes(entry: Any) -> int | None:
    """The end offset of a valid safetensors header entry, else ``None``."""
    if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPE_BYTES:
        return None
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or not all(_count(s) for s in shape):
        return None
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_count, offsets)):
        return None
    begin, stop = offsets
    if stop - begin != math.prod(shape) * _DTYPE_BYTES[entry["dtype"]]:
        return None
    return int(stop)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_trainer_state(file: Path) -> dict[str, Any]:
    """``trainer_state.pt``, loaded with ``weights_only=True`` (tensors and plain
    containers only); the optimiser's tensors must be finite.

    The ``strategy`` entry is not checked for finite values: strategies keep NaN sentinels
    there (e.g. "no previous epoch yet").
    """
    advice = damaged_advice(file.parent)
    size = file.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"{file} is empty: it was cut short while being written or copied. {advice}"
        )
    with open(file, "rb") as f:
        magic = f.read(4)
    if magic != _ZIP_MAGIC:
        raise CheckpointError(
            f"{file} is not a polymodal trainer state: it is not an archive written by "
            f"torch.save. {advice}"
        )
    try:
        with zipfile.ZipFile(file) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise CheckpointError(
            f"{file} is truncated or corrupt ({size} bytes, its zip directory is unreadable): "
            f"it was cut short while being written or copied. {advice}"
        ) from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message suggests an unsafe load; it must not reach the user.
        raise CheckpointError(
            f"{file} is not a polymodal trainer state: it holds Python objects other than "
            "tensors and plain containers, which polymodal never writes and never loads. It "
            f"was replaced or tampered with; do not load it by other means. {advice}"
        ) from None
    except Exception:  # anything else torch raises on a damaged archive
        raise CheckpointError(f"{file} is corrupt: torch cannot read it. {advice}") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{file} must hold a dict of states, got {type(state).__name__}. {advice}"
        )
    where = _nonfinite(state.get("optimizer"), "optimizer")
    if where is not None:
        raise CheckpointError(
            f"{file} holds NaN or infinite values in {where!r}; a run resumed from it would "
            f"train on NaN. {advice}"
        )
    return state


def _nonfinite(obj: Any, path: str) -> str | None:
    """The dotted path of the first floating-point tensor in ``obj`` with a NaN/inf."""
    if isinstance(obj, Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            return path
        return None
    items: Any = ()
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    for key, value in items:
        found = _nonfinite(value, f"{path}.{key}")
        if found is not None:
            return found
    return None


def check_fields(data: Mapping[str, Any], cls: type, file: Path, advice: str = "") -> None:
    """Raise a :class:`CheckpointError` naming ``file`` and the key when a value of
    ``data`` does not have the type ``cls``'s annotation of that key gives."""
    hints = typing.get_type_hints(cls)
    for key, hint in hints.items():
        if key in data and not _matches(data[key], hint):
            value = data[key]
            raise CheckpointError(
                f"{file}: {key!r} must be {_describe(hint)}, got {type(value).__name__} "
                f"{_short(repr(value))}. The file was modified or is not a polymodal "
                f"checkpoint. {advice or damaged_advice(file.parent)}"
            )


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin or hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint is type(None):
        return "null"
    if origin is list:
        return f"a list of {_describe(args[0]).split(' ', 1)[1]}s"
    if origin is dict:
        return "an object"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


@contextmanager
def restoring(where: str | Path, what: str, advice: str) -> Iterator[None]:
    """Turn an error raised while restoring ``what`` from ``where`` (an optimiser state that
    does not fit, a malformed RNG state) into a :class:`CheckpointError` naming both."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(
            f"Cannot restore {what} from {where} ({type(exc).__name__}: "
            f"{_short(str(exc), 200)}); it does not fit this run or was modified. {advice}"
        ) from None


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "CheckpointError",
    "check_fields",
    "damaged_advice",
    "read_json",
    "read_json_object",
    "read_text",
    "read_trainer_state",
    "read_weights",
    "restoring",
]
