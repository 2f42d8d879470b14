"""Where a model runs: device names, and the autocast precision it runs at.

Training and inference both read these; ``"auto"`` means CUDA when torch sees it, else CPU
(the default everywhere, so a laptop and a GPU box run the same config).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str | torch.device, option: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are checked to exist.

    ``option`` names the setting in errors: ``"device"`` (a config key or argument,
    ``device='cuda'``) or a command-line flag such as ``"--device"`` (``--device cuda``).
    """
    if isinstance(name, torch.device):
        return name

    def said(value: str) -> str:
        return f"{option} {value}" if option.startswith("-") else f"{option}={value}"

    given = said(name if option.startswith("-") else repr(name))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"{given} is not a device name; use auto, cpu, cuda, cuda:N or mps."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{given} but torch sees no CUDA device (torch {torch.__version__}). "
            f"Use {said('cpu')} or {said('auto')}."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{given} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{given} but MPS is not available here; use {said('auto')}.")
    return dev


def check_precision(device: torch.device, precision: str) -> None:
    """Raise a ``ValueError`` unless ``precision`` runs on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision='bf16' but {torch.cuda.get_device_name(device)} does not support bf16. "
            "Use precision=fp32."
        )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``precision="bf16"`` (CPU too); a no-op for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


__all__ = ["PRECISIONS", "autocast", "check_precision", "resolve_device"]
