"""A bounded in-memory cache of per-example tensors (decoded files, features).

Entries are evicted least recently used first once their total size passes ``max_bytes``,
as the MiniLM cache does (``cache_mb``).  Two users:

* :class:`~polymodal.data.manifest.ManifestDataset` (``cache_mb``) keeps each decoded
  file, keyed by row and column, so an epoch after the first reads no file;
* the audio encoders (``cache_mb``) keep each clip's normalised log-mel, keyed by a digest
  of the clip's samples (:func:`content_key`): a front end with no trainable parameter and
  no randomness maps the same clip to the same frames in every epoch, the key needs no
  example id and holds in any batch layout, and a clip that changes (another file, an
  augmentation) is simply a new key.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from torch import Tensor


def content_key(x: Tensor) -> str:
    """A digest of a tensor's dtype, shape and values (equal tensors, equal keys).

    Shape:
        x: any; read on the CPU
    """
    data = x.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{data.dtype}{tuple(data.shape)}".encode())
    h.update(data.numpy().tobytes())
    return h.hexdigest()


def tensor_bytes(x: Tensor) -> int:
    """Bytes of a tensor's elements."""
    return x.numel() * x.element_size()


class FeatureCache:
    """Content key -> tensor, least recently used first, at most ``max_bytes`` in all.

    Args:
        max_bytes: the most the stored tensors may hold; 0 stores nothing.  An entry larger
            than ``max_bytes`` is not stored.

    Attributes:
        nbytes: bytes held now.
        hits, misses: look-ups that found / did not find their key.
    """

    def __init__(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(
                f"The 'max_bytes' parameter of FeatureCache must be an int >= 0 (0: no "
                f"cache); got {max_bytes!r}."
            )
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> Tensor | None:
        """The stored tensor (now the most recently used), or ``None``."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Tensor) -> None:
        """Store a detached copy of ``value``, evicting the least recently used past the bound."""
        size = tensor_bytes(value)
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= tensor_bytes(old)
        self._entries[key] = value.detach().clone()
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= tensor_bytes(evicted)

    def clear(self) -> None:
        """Drop every entry (the hit and miss counts are kept)."""
        self._entries.clear()
        self.nbytes = 0
