"""Seeding and capturing/restoring every random number generator a run draws from."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from torch import Tensor


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) generators.

    With ``deterministic=True``, also ask torch for deterministic kernels (cuDNN without
    autotuning; on CUDA machines ``use_deterministic_algorithms`` in warn-only mode, so an
    op without a deterministic version warns instead of failing).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA devices too
    if deterministic:
        # Needed by cuBLAS for deterministic matmuls; only read before CUDA initialises.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        if torch.cuda.is_available():  # CPU kernels used here are deterministic already
            torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The state of every generator: a JSON-able part (Python, NumPy) and tensors (torch).

    Returns:
        ``(json_part, tensor_part)``; pass both to :func:`set_rng_state`.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    json_part: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return json_part, tensors


def set_rng_state(json_part: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Restore the generators from :func:`rng_state`'s output."""
    version, internal, gauss = json_part["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    kind, keys, pos, has_gauss, cached = json_part["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"].cpu())
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        torch.cuda.set_rng_state_all([tensors[f"torch_cuda_{i}"].cpu() for i in range(n)])


__all__ = ["rng_state", "seed_everything", "set_rng_state"]
