"""Feature vectors and sequences: :func:`decode_features` (files, lists, arrays, JSON cells)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polymodal.data.decode.errors import DecodeError, PathLike, _at, _check_file, _error
from polymodal.data.decode.limits import check_file_bytes, get_limits, limit_error

_FEATURE_EXTS = (".npy", ".npz", ".pt", ".pth", ".csv", ".txt")


def decode_features(
    source: PathLike | Sequence[float] | np.ndarray | Tensor, *, where: str = ""
) -> Tensor:
    """A feature vector (D,) or sequence (T, D) from a file or a value.

    Args:
        source: a ``.npy`` file, a ``.npz`` file holding one array, a ``.pt``/``.pth`` file
            holding one tensor (loaded with ``weights_only=True``), a ``.csv`` (comma) or
            ``.txt`` (whitespace) table of numbers; or a list/array/tensor of numbers; or a
            JSON string such as ``"[1, 2.5]"`` (a manifest cell).
        where: context for error messages.

    Returns:
        (D,) or (T, D) float32.

    Raises:
        LimitError: a file over ``max_feature_bytes`` (an ``.npz``: its array unpacked),
            checked before it is read (:mod:`~polymodal.data.decode.limits`).
        DecodeError: unreadable file, non-numeric values, NaN/inf, empty, or not 1-D/2-D.
    """
    path: PathLike | None = None
    if isinstance(source, str) and source.lstrip().startswith("["):
        try:
            arr = np.asarray(json.loads(source), dtype=np.float64)
        except (json.JSONDecodeError, ValueError, TypeError) as e:
            raise _error(
                "features",
                None,
                where,
                f"the string {_short(source)} is not a JSON list of numbers ({e})",
                "write it as [1.0, 2.5, ...] (or [[...], [...]] for a sequence)",
            ) from e
    elif isinstance(source, str | os.PathLike):
        path = source
        arr = _load_feature_file(_check_file(source, where), source, where)
    elif isinstance(source, Tensor):
        arr = source.detach().cpu().numpy()
    elif isinstance(source, np.ndarray | Sequence):
        try:
            arr = np.asarray(source, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise _error(
                "features",
                None,
                where,
                f"the values are not a rectangular list of numbers ({e})",
                "pass a flat list of numbers, or a list of equal-length lists",
            ) from e
    else:
        raise TypeError(
            f"decode_features expects a path, a JSON string, a list or an array{_at(where)}; "
            f"got {type(source).__name__}."
        )
    return _check_features(arr, path, where)


def _short(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


def _load_feature_file(p: Path, path: PathLike, where: str) -> np.ndarray:
    ext = p.suffix.lower()
    if ext not in _FEATURE_EXTS:
        raise _error(
            "features",
            path,
            where,
            f"unsupported extension {ext!r}",
            f"save the features as one of {', '.join(_FEATURE_EXTS)}",
        )
    fix = "store fewer or smaller features per file (e.g. pool them, or float16)"
    check_file_bytes(p, path, where, "features", "max_feature_bytes", fix)
    try:
        if ext == ".npy":
            return np.load(p, allow_pickle=False)
        if ext == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if len(keys) != 1:
                    raise _error(
                        "features",
                        path,
                        where,
                        f"the .npz holds {len(keys)} arrays {keys}, expected exactly one",
                        "save one array per file (np.save or np.savez)",
                    )
                unpacked = sum(
                    i.file_size
                    for i in z.zip.infolist()
                    if i.filename in (keys[0], f"{keys[0]}.npy")
                )
                if unpacked > get_limits().max_feature_bytes:
                    raise limit_error(
                        "features",
                        path,
                        where,
                        f"its array unpacks to {unpacked:,} bytes",
                        "max_feature_bytes",
                        unpacked,
                        fix,
                    )
                return z[keys[0]]
        if ext in (".pt", ".pth"):
            obj = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(obj, Tensor):
                raise _error(
                    "features",
                    path,
                    where,
                    f"the file holds a {type(obj).__name__}, expected a tensor",
                    "save the tensor itself: torch.save(tensor, path)",
                )
            return obj.detach().to(torch.float64).numpy()
        delimiter = "," if ext == ".csv" else None
        return np.loadtxt(p, delimiter=delimiter, dtype=np.float64, ndmin=1)
    except DecodeError:
        raise
    except Exception as e:  # numpy/torch raise many types for damaged files
        raise _error(
            "features",
            path,
            where,
            f"cannot read it ({type(e).__name__}: {e})",
            "re-save the features; CSV/TXT must hold only numbers (no header)",
        ) from e


def _check_features(arr: np.ndarray, path: PathLike | None, where: str) -> Tensor:
    if (
        arr.dtype == object
        or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_)
        or np.iscomplexobj(arr)
    ):
        raise _error(
            "features",
            path,
            where,
            f"expected real numbers, got dtype {arr.dtype}",
            "store numeric (float or int) features",
        )
    if arr.ndim not in (1, 2):
        raise _error(
            "features",
            path,
            where,
            f"expected shape (D,) or (T, D), got {arr.shape}",
            "flatten or pool the features to one vector, or one vector per step",
        )
    if arr.size == 0:
        raise _error(
            "features",
            path,
            where,
            f"the features are empty (shape {arr.shape})",
            "fill them in, or mark the modality missing for this example",
        )
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _error(
            "features",
            path,
            where,
            f"{int(bad.sum())} NaN/inf value(s), the first at index {first}",
            "impute or drop the missing values before decoding",
        )
    return torch.from_numpy(np.ascontiguousarray(arr))
