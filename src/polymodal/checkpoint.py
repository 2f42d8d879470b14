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

Writing goes to a temporary folder next to the target, each file flushed to disk, and the
folder then takes the target's name with :func:`os.replace`; the previous checkpoint is
removed only after that.  A crash at any point leaves either the old or the new checkpoint
complete (:func:`load_checkpoint` also recovers the one moment between the two renames).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

WEIGHTS = "model.safetensors"
STATE = "state.json"
TRAINER_STATE = "trainer_state.pt"
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
        """The text file ``name`` saved with the checkpoint (e.g. ``config.yaml``)."""
        p = self.path / name
        if not p.is_file():
            raise FileNotFoundError(
                f"Checkpoint {self.path} has no {name!r}; it was not written by "
                "polymodal's trainer or is incomplete."
            )
        return p.read_text()


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
    old = parent / f".{final.name}{_OLD_SUFFIX}"
    if tmp.exists():
        shutil.rmtree(tmp)
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
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(parent)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists() and old.exists():
            os.replace(old, final)
        raise
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_exists(path: str | os.PathLike[str]) -> bool:
    """Whether a complete checkpoint is at ``path`` (or recoverable next to it)."""
    final = Path(path)
    old = final.parent / f".{final.name}{_OLD_SUFFIX}"
    return (final / STATE).is_file() or (old / STATE).is_file()


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> None:
    """Delete temporary folders/files a killed writer left in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".") and _TMP_MARK in p.name:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike[str], with_trainer_state: bool = True) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint` (tensors on CPU)."""
    final = Path(path)
    old = final.parent / f".{final.name}{_OLD_SUFFIX}"
    if not (final / STATE).is_file() and (old / STATE).is_file():
        # Killed between the two renames of save_checkpoint: the previous one is complete.
        os.replace(old, final)
    if not (final / STATE).is_file():
        raise FileNotFoundError(
            f"No checkpoint at {final}: expected {STATE} and {WEIGHTS} there. Pass a checkpoint "
            "folder (e.g. runs/NAME/checkpoints/best) or a run folder."
        )
    state = json.loads((final / STATE).read_text())
    weights = load_file(str(final / WEIGHTS), device="cpu")
    trainer_state: dict[str, Any] = {}
    if with_trainer_state and (final / TRAINER_STATE).is_file():
        trainer_state = torch.load(final / TRAINER_STATE, map_location="cpu", weights_only=True)
    return Checkpoint(final, weights, state, trainer_state)


def check_weights(model: nn.Module, weights: Mapping[str, Tensor], source: str = "") -> None:
    """Raise a ``ValueError`` naming every key/shape that differs between ``weights`` and
    ``model``'s ``state_dict`` (instead of torch's raw ``load_state_dict`` error)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(weights)
        if tuple(own[k].shape) != tuple(weights[k].shape)
    )
    if not (missing or unexpected or shapes):
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
        f"The checkpoint{where} does not belong to this model; "
        + "; ".join(parts)
        + ". Use the config saved with the checkpoint, or a checkpoint of this model."
    )


def weights_checksum(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of every tensor of ``module.state_dict()``, in order.

    Equal for equal weights whatever their device; any changed byte changes it.
    """
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
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
    "STATE",
    "TRAINER_STATE",
    "WEIGHTS",
    "Checkpoint",
    "atomic_write_text",
    "check_weights",
    "checkpoint_exists",
    "load_checkpoint",
    "load_weights",
    "remove_stale_temporaries",
    "save_checkpoint",
    "weights_checksum",
]
