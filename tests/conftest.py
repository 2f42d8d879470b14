from __future__ import annotations

import atexit
import importlib
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import torch

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Absolute, so tests that chdir, symlink or serve files see the same folder whatever the
# README's relative POLYMODAL_DATA=../shared/data was relative to.
os.environ["POLYMODAL_DATA"] = str(Path(os.environ.get("POLYMODAL_DATA") or _DEFAULT).resolve())
torch.set_num_threads(1)

# No test writes to the real user cache (~/.cache/polymodal: processed data sets, the
# frozen-encoder feature cache, models): the session gets a private one, removed at exit.
# Other tools' caches that default under XDG_CACHE_HOME keep their real place.
_REAL_CACHE = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
os.environ.setdefault("HF_HOME", str(Path(_REAL_CACHE) / "huggingface"))
os.environ.setdefault("TORCH_HOME", str(Path(_REAL_CACHE) / "torch"))
_SESSION_CACHE = tempfile.mkdtemp(prefix="polymodal-test-cache-")
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = _SESSION_CACHE
for _var in ("POLYMODAL_FEATURE_CACHE", "POLYMODAL_FEATURE_CACHE_MB"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real data (``POLYMODAL_DATA``; ../shared/data by default)."""
    root = Path(os.environ["POLYMODAL_DATA"])
    if not root.is_dir():
        pytest.fail(f"POLYMODAL_DATA={root} does not exist; point it at ../shared/data")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def require(module: str) -> ModuleType:
    """Import an optional package that the README's install command installs.

    Where it is missing, a developer's partial install skips the test; under ``CI=true``
    (the README's own install ran) a missing package fails it, so a broken install can
    never pass as a run of skipped tests.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        try:
            return importlib.import_module(module)
        except ImportError as e:
            pytest.fail(f"CI=true but {module!r} does not import ({e}); the README installs it.")
    return pytest.importorskip(module)
