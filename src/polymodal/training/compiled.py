"""``compile: true``: the model's forward compiled by ``torch.compile`` (inductor), or a
clear fallback to eager when the backend cannot build kernels on this machine.

``nn.Module.compile`` compiles in place: the module keeps its parameters and their names,
so checkpoints, ``evaluate`` and ``predict`` are unchanged, and DDP wraps it as before.
Inductor writes C++ kernels on the CPU (it needs a C++ compiler: ``g++``, or ``$CXX``) and
Triton kernels on a GPU (it needs ``triton``).  Without them the first forward would fail
deep inside the compiler; :func:`compile_model` checks first and trains uncompiled with a
warning instead.  What compiling buys is measured in ``benchmarks/compile.py``.

One difference from eager training: a parameter that reaches only outputs the loss does
not use gets a zero gradient from the compiled backward, where eager gives it none, so
AdamW decays it (weight decay) instead of leaving it alone.  Parameters the loss uses train
the same up to float rounding (``tests/training/test_compiled.py``: 1e-5).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("polymodal.training")


def missing_backend(device: torch.device) -> str | None:
    """Why inductor cannot compile for ``device`` here (``None``: it can)."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "no triton (pip install triton)"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:  # InvalidCxxCompiler; an import error on another torch
        return f"no C++ compiler ({type(e).__name__}; install g++ or set $CXX)"
    return None


def compile_model(model: nn.Module, device: torch.device) -> bool:
    """Compile ``model``'s forward in place (``nn.Module.compile``); return whether it was.

    When inductor cannot build kernels for ``device`` (:func:`missing_backend`) the model
    stays eager and a warning says why and what to install."""
    why = missing_backend(device)
    if why is not None:
        logger.warning(
            "compile=true: torch.compile's inductor backend cannot build kernels on %s: %s. "
            "Training without compiling (set compile=false to silence this).",
            device,
            why,
        )
        return False
    model.compile()
    return True


__all__ = ["compile_model", "missing_backend"]
