"""The checkpoint format: one folder per checkpoint, written atomically.

This module sits below every tier (it needs only torch and safetensors), so training
writes checkpoints and inference, search and embedding read them without importing
training.

A checkpoint folder holds

- ``model.safetensors``: the model's weights;
- ``state.json``: epoch, step, best metric, history and the Python/NumPy RNG states;
- ``trainer_state.pt`` (optional): optimizer, scheduler and torch RNG states, saved with
  :func:`torch.save` and loaded with ``weights_only=True`` (tensors and plain containers
  only, never arbitrary pickled objects);
- any small text files passed in ``files`` (the run's ``config.yaml``, ``schema.json``), so
  the folder alone is enough to rebuild the model.

Writing goes to a temporary folder next to the target (``.NAME.tmp-PID``), each file
flushed to disk and ``state.json`` last, so its presence marks a complete folder.  Then the
previous checkpoint steps aside (``NAME`` -> ``.NAME.old``), the new one takes its name
(``.NAME.tmp-PID`` -> ``NAME``) and the previous one is removed, ``state.json`` first (a
half-removed folder never looks complete).  A kill at any point leaves a complete
checkpoint under one of those three names (none only while the very first one is being
written): :func:`find_checkpoint` finds it, and readers read it where it is, never
renaming the writer's folders.  The writer itself finishes or undoes what a killed save
left (:func:`remove_stale_temporaries`, and at the start of :func:`save_checkpoint`).

Every file read is checked (presence, size, header, dtypes, finite values) and named in
its error, a :class:`CheckpointError` (see :mod:`polymodal.checkpoint_files`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from polymodal.checkpoint_files import (
    CheckpointError,
    check_state_types,
    damaged_advice,
    read_json_object,
    read_text,
    read_trainer_state,
    read_weights,
)

WEIGHTS = "model.safetensors"
STATE = "state.json"
TRAINER_STATE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"  # a run folder's checkpoints: CHECKPOINTS/best, CHECKPOINTS/last
#: A run's latest pointer, ``runs/NAME.latest``: a text file naming the newest run folder
#: of that name (written by :mod:`polymodal.training.rundir`).
LATEST_SUFFIX = ".latest"
_OLD_SUFFIX = ".old"
_TMP_MARK = ".tmp-"


@dataclass
class Checkpoint:
    """A loaded checkpoint folder.

    Attributes:
        path: the folder.
        weights: parameter/buffer name -> tensor (CPU).
        state: the JSON state (epoch, step, best metric, ...).
        trainer_state: optimizer/scheduler/RNG states, empty when the folder has none.
    """

    path: Path
    weights: dict[str, Tensor]
    state: dict[str, Any]
    trainer_state: dict[str, Any] = field(default_factory=dict)

    def text(self, name: str) -> str:
        """The text file ``name`` saved with the checkpoint (e.g. ``config.yaml``); an
        empty or undecodable one raises a :class:`CheckpointError` naming it."""
        p = self.path / name
        if not p.is_file():
            raise FileNotFoundError(
                f"Checkpoint {self.path} has no {name!r}; it was not written by "
                "polymodal's trainer or is incomplete."
            )
        return read_text(p)

    def json(self, name: str) -> dict[str, Any]:
        """The JSON object file ``name`` saved with the checkpoint (e.g. ``schema.json``);
        one that is empty, not JSON or not an object raises a :class:`CheckpointError`."""
        self.text(name)  # present, not empty
        return read_json_object(self.path / name)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _complete(folder: Path) -> bool:
    """Whether ``folder`` holds a complete checkpoint (``state.json`` is written last and
    removed first, so with it every file is there)."""
    return (folder / STATE).is_file() and (folder / WEIGHTS).is_file()


def remove_checkpoint_tree(folder: str | os.PathLike[str]) -> None:
    """Delete a checkpoint folder (or a folder of them), ``state.json`` files first, so
    that a kill part-way never leaves a folder that looks complete."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        folder.unlink(missing_ok=True)
        return
    for marker in sorted(folder.rglob(STATE)):
        marker.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _old(final: Path) -> Path:
    return final.parent / f".{final.name}{_OLD_SUFFIX}"


def _temporaries(final: Path) -> list[Path]:
    """The temporary folders of saves of ``final``, newest first."""
    if not final.parent.is_dir():
        return []
    prefix = f".{final.name}{_TMP_MARK}"
    found = [p for p in final.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    found.sort(key=lambda p: (p / STATE).stat().st_mtime if _complete(p) else 0.0)
    return found[::-1]


def find_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The folder that holds the checkpoint saved at ``path``, whatever state a kill of
    :func:`save_checkpoint` left it in; ``None`` when there is none.

    In order: ``path`` itself when complete; else the previous checkpoint set aside before
    the second rename (``.NAME.old``); else a new one written in full but not yet renamed
    (``.NAME.tmp-PID``, the newest).
    """
    final = Path(path)
    for folder in (final, _old(final), *_temporaries(final)):
        if _complete(folder):
            return folder
    return None


def _weights_for_saving(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses shared storage (tied weights) and non-contiguous tensors; a clone
    # stores each name separately and load_state_dict copies into every tied parameter.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}


def save_checkpoint(
    path: str | os.PathLike[str],
    weights: Mapping[str, Tensor],
    state: Mapping[str, Any],
    trainer_state: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write a checkpoint folder at ``path`` atomically, replacing any previous one.

    Args:
        path: the checkpoint folder (e.g. ``runs/mosi/checkpoints/last``).
        weights: a model ``state_dict``.
        state: JSON-serialisable training state.
        trainer_state: tensors and plain containers (optimizer/scheduler/RNG states).
        files: extra text files, name -> content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    final = Path(path)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{final.name}{_TMP_MARK}{os.getpid()}"
    old = _old(final)
    if not (final / STATE).is_file() and _complete(old):
        # A save killed between its two renames: the previous checkpoint takes its name back.
        remove_checkpoint_tree(final)
        os.replace(old, final)
    if tmp.exists():
        remove_checkpoint_tree(tmp)
    tmp.mkdir()
    try:
        save_file(_weights_for_saving(weights), str(tmp / WEIGHTS))
        _fsync_file(tmp / WEIGHTS)
        if trainer_state is not None:
            torch.save(dict(trainer_state), tmp / TRAINER_STATE)
            _fsync_file(tmp / TRAINER_STATE)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
            _fsync_file(tmp / name)
        # state.json last: its presence marks a complete folder.
        (tmp / STATE).write_text(json.dumps(dict(state), indent=1) + "\n")
        _fsync_file(tmp / STATE)
        _fsync_dir(tmp)
        if old.exists():
            remove_checkpoint_tree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(parent)
    except BaseException:
        if tmp.exists():
            remove_checkpoint_tree(tmp)
        if not final.exists() and old.exists():
            os.replace(old, final)
        raise
    if old.exists():
        remove_checkpoint_tree(old)
    return final


def checkpoint_exists(path: str | os.PathLike[str]) -> bool:
    """Whether a complete checkpoint is at ``path`` (or next to it, see
    :func:`find_checkpoint`)."""
    return find_checkpoint(path) is not None


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> None:
    """Finish or undo what a killed writer left in ``folder``; call it only as the writer.

    A checkpoint whose save was killed between its renames gets its name back from
    ``.NAME.old`` (or, on its first save, from its complete temporary folder); then every
    temporary folder/file and every leftover ``.NAME.old`` is deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in sorted(folder.iterdir()):
        if not p.name.startswith("."):
            continue
        if p.name.endswith(_OLD_SUFFIX):
            name = p.name[1 : -len(_OLD_SUFFIX)]
        elif _TMP_MARK in p.name:
            name = p.name[1 : p.name.index(_TMP_MARK)]
        else:
            continue
        final = folder / name
        found = find_checkpoint(final)
        if p.is_dir() and found == p:
            remove_checkpoint_tree(final)
            os.replace(p, final)
        elif p.exists():
            remove_checkpoint_tree(p)


def _not_found(final: Path) -> FileNotFoundError:
    """Why there is no checkpoint at ``final``, and what to do."""
    if final.is_dir() and ((final / STATE).is_file() or (final / WEIGHTS).is_file()):
        missing = [n for n in (STATE, WEIGHTS) if not (final / n).is_file()]
        return FileNotFoundError(
            f"The checkpoint folder {final} is incomplete: {missing[0]} is missing (the run "
            f"was stopped while it was being written or deleted). {damaged_advice(final)}"
        )
    if _temporaries(final):
        return FileNotFoundError(
            f"No checkpoint at {final}: its first save was stopped before it completed "
            f"({_temporaries(final)[0].name} is incomplete). Resume or restart the training."
        )
    return FileNotFoundError(
        f"No checkpoint at {final}: expected {STATE} and {WEIGHTS} there. Pass a checkpoint "
        "folder (e.g. runs/NAME/checkpoints/best) or a run folder."
    )


def require_checkpoint(path: str | os.PathLike[str]) -> Path:
    """:func:`find_checkpoint`, or a ``FileNotFoundError`` saying why there is none (an
    incomplete folder names its missing file) and what to do."""
    folder = find_checkpoint(path)
    if folder is None:
        raise _not_found(Path(path))
    return folder


def resolve_checkpoint(path: str | os.PathLike[str], which: str = "best") -> Path:
    """The folder holding the checkpoint at ``path``: ``path`` itself (a checkpoint folder)
    or a run folder's ``checkpoints/<which>``; a latest pointer ``runs/NAME.latest`` stands
    for the run folder it names.

    A save killed part-way may have left the checkpoint next to its name, as ``.best.old``
    or as a complete ``.best.tmp-PID``; that folder is returned then
    (:func:`find_checkpoint`).  An incomplete folder raises a ``FileNotFoundError`` naming
    its missing file; so does a path that is neither a checkpoint nor a run folder.
    """
    p = Path(path)
    if p.suffix == LATEST_SUFFIX and p.is_file():
        p = p.parent / p.read_text(encoding="utf-8").strip()
    run_checkpoint = p / CHECKPOINTS / which
    for candidate in (p, run_checkpoint):
        found = find_checkpoint(candidate)
        if found is not None:
            return found
    own = (p / STATE).is_file() or (p / WEIGHTS).is_file()
    beside = p.parent.is_dir() and any(q.name.startswith(f".{p.name}.") for q in p.parent.iterdir())
    if own or beside:
        return require_checkpoint(p)  # raises: what is missing, what to do
    if (p / CHECKPOINTS).is_dir():
        return require_checkpoint(run_checkpoint)  # raises
    raise FileNotFoundError(
        f"{str(p)!r} is neither a checkpoint folder (with {STATE} and {WEIGHTS}) nor a run "
        f"folder with {CHECKPOINTS}/{which}/. Pass e.g. runs/NAME or "
        f"runs/NAME/{CHECKPOINTS}/best."
    )


def load_checkpoint(path: str | os.PathLike[str], with_trainer_state: bool = True) -> Checkpoint:
    """Read the checkpoint saved at ``path`` by :func:`save_checkpoint` (tensors on CPU).

    The folder read is :func:`find_checkpoint`'s (``Checkpoint.path``), read where it is.
    Every file is checked first: a missing, truncated, corrupt or tampered file, a tensor
    with NaN/inf or a ``state.json`` that is not an object raises a
    :class:`CheckpointError` (``FileNotFoundError`` when there is no checkpoint) naming
    the file (and tensor) and what to do.
    """
    folder = require_checkpoint(path)
    state = read_json_object(folder / STATE)
    check_state_types(state, folder / STATE)
    weights = read_weights(folder / WEIGHTS)
    trainer_state: dict[str, Any] = {}
    if with_trainer_state and (folder / TRAINER_STATE).is_file():
        trainer_state = read_trainer_state(folder / TRAINER_STATE)
    return Checkpoint(folder, weights, state, trainer_state)


def check_weights(
    model: nn.Module,
    weights: Mapping[str, Tensor],
    source: str = "",
    *,
    skip: Sequence[str] = (),
    advice: str = "Use the config saved with the checkpoint, or a checkpoint of this model.",
) -> None:
    """Check ``weights`` against ``model``'s ``state_dict`` before loading them.

    Raises a ``ValueError`` naming every key/shape that differs (instead of torch's raw
    ``load_state_dict`` error), ending with ``advice``; and a :class:`CheckpointError`
    naming the tensor when ``weights`` stores integers or booleans where the model holds
    floating-point values (``load_state_dict`` would cast them) or holds NaN/inf.

    Args:
        model: the model the weights are for.
        weights: parameter/buffer name -> tensor.
        source: names the weights in messages (e.g. ``.../best/model.safetensors``).
        skip: key prefixes the weights need not hold (e.g. ``encoders.text.``: a joint
            model's frozen encoders, rebuilt from their config); held ones are checked.
        advice: what to do about missing, unexpected or misshapen keys.
    """
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(weights) if not k.startswith(tuple(skip)))
    unexpected = sorted(set(weights) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(weights)
        if tuple(own[k].shape) != tuple(weights[k].shape)
    )
    if not (missing or unexpected or shapes):
        _check_values(own, weights, source)
        return

    def head(items: list[str]) -> str:
        more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
        return ", ".join(items[:8]) + more

    parts = []
    if missing:
        parts.append(f"missing from the checkpoint: {head(missing)}")
    if unexpected:
        parts.append(f"not in the model: {head(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch: {head(shapes)}")
    where = f" {source}" if source else ""
    raise ValueError(
        f"The checkpoint{where} does not belong to this model; " + "; ".join(parts) + f". {advice}"
    )


def _check_values(own: Mapping[str, Tensor], weights: Mapping[str, Tensor], source: str) -> None:
    """Integers/booleans where the model holds floats, or NaN/inf: a :class:`CheckpointError`."""
    what = source or "The weights"
    bad = sorted(
        k
        for k in own
        if k in weights and own[k].is_floating_point() and not weights[k].is_floating_point()
    )
    if bad:
        k = bad[0]
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{what}: tensor {k!r} is stored as {weights[k].dtype}{more}, "
            f"but the model's {k!r} is floating point ({own[k].dtype}); these are not "
            "trained weights (a model loaded from them gives e.g. the same probabilities for "
            "every input). polymodal saves weights as floating point, so the file was modified "
            "or written by another tool. Use another checkpoint of the run or train again."
        )
    for k, t in weights.items():
        if t.is_floating_point():
            finite = torch.isfinite(t if t.element_size() > 1 else t.float())
            if not bool(finite.all()):
                raise CheckpointError(
                    f"{what}: tensor {k!r} holds {int((~finite).sum())} NaN or infinite "
                    f"value(s) (of {t.numel()}); a model with such weights outputs NaN. The "
                    "weights were damaged or modified, or the run diverged. Use another "
                    "checkpoint of the run or train again."
                )


def weights_checksum(module: nn.Module, exclude: Collection[str] = ()) -> str:
    """SHA-256 (first 16 hex digits) of every tensor of ``module.state_dict()``, in order.

    Equal for equal weights whatever their device; any changed byte changes it.  Entries
    named in ``exclude`` are left out (e.g. the parameters that train, to key what only
    the frozen ones decide).
    """
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        if name in exclude:
            continue
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        data = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()[:16]


def load_weights(model: nn.Module, weights: Mapping[str, Tensor], source: str = "") -> None:
    """:func:`check_weights`, then load ``weights`` into ``model`` (strictly)."""
    check_weights(model, weights, source)
    model.load_state_dict(dict(weights), strict=True)


__all__ = [
    "CHECKPOINTS",
    "LATEST_SUFFIX",
    "STATE",
    "TRAINER_STATE",
    "WEIGHTS",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_text",
    "check_weights",
    "checkpoint_exists",
    "find_checkpoint",
    "load_checkpoint",
    "load_weights",
    "remove_checkpoint_tree",
    "remove_stale_temporaries",
    "require_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "weights_checksum",
]
