"""The figures polymodal writes: matplotlib on its file-only Agg backend, imported on use."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot(what: str) -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed).

    Raises:
        ImportError: matplotlib is not installed; the message names ``what`` needed it.
    """
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(
            f"{what} needs matplotlib; install it with pip install 'polymodal[plot]'."
        ) from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (its folder created), close it, and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


__all__ = ["pyplot", "save_figure"]
