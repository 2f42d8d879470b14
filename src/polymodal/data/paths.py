"""Where data sets live: an explicit path, then ``POLYMODAL_DATA``, then the user cache."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "POLYMODAL_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not where polymodal looked; the message lists each place and the fix."""


def cache_dir() -> Path:
    """The user cache for downloads: ``$XDG_CACHE_HOME/polymodal`` or ``~/.cache/polymodal``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polymodal"


def candidate_roots(subdir: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for data set ``subdir``, in order."""
    out: list[Path] = []
    if root is not None:
        r = Path(root).expanduser()
        # Accept both the data set's own folder and a parent folder holding it.
        out += [r, r / subdir]
        return out
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env).expanduser() / subdir)
    out.append(cache_dir() / subdir)
    return out


def find_root(subdir: str, marker: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The first candidate folder containing ``marker`` (a relative path), or ``None``."""
    for cand in candidate_roots(subdir, root):
        if (cand / marker).exists():
            return cand
    return None


def not_found(name: str, subdir: str, marker: str, root: str | os.PathLike[str] | None) -> str:
    looked = "\n".join(f"  - {p / marker}" for p in candidate_roots(subdir, root))
    return (
        f"Data set {name!r} not found. Looked for {marker!r} in:\n{looked}\n"
        f"Fix: pass --root PATH (in Python root=PATH, in a run config data.root), set "
        f"{ENV_VAR} to the folder holding '{subdir}/', or fetch it from upstream into the user "
        "cache with download=True (in a run config: data.options.download=true)."
    )
