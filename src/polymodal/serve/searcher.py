"""``POST /search``: an index folder from ``polymodal index build``, and its thumbnails.

The query is embedded with the joint model that built the index (named in the folder's
``source.json``), as ``polymodal search`` does, and decoded with the query modality's spec.
Thumbnails are served only from the index's own files: :meth:`Searcher.thumbnail` maps a
URL path relative to the index's image folder to a file only when it is one of the
index's items (after resolving symbolic links, and inside that folder); anything else is
a 404, whatever ``..``, absolute paths or links it holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import torch
from torch import Tensor

from polymodal.checkpoint_files import read_json_object
from polymodal.data.decode.dispatch import EXTENSIONS
from polymodal.data.modality import ModalityKind
from polymodal.data.sample import ModalityBatch
from polymodal.joint.checkpoint import load_joint_checkpoint
from polymodal.retrieval.index import Index
from polymodal.retrieval.load import load_index
from polymodal.serve.errors import RequestError
from polymodal.serve.uploads import Upload, decode_upload

SOURCE_FILE = "source.json"  # as polymodal index build writes it (cli.index_cmd)
MAX_K = 100


@dataclass(frozen=True)
class Query:
    """One query: the model modality that embeds it and its decoded value."""

    modality: str
    value: str | Tensor  # text, or (3, H, W) image, or (T,) audio
    k: int


class Searcher:
    """An index with the joint model that built it.

    Args:
        folder: an index folder (``polymodal index build -o FOLDER``).
        name: how requests, URLs and the page name it.
        device: where the model runs.
        checkpoint: the joint model (default: the one ``FOLDER/source.json`` names).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        name: str,
        device: str = "cpu",
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.name = name
        if checkpoint is None:
            fix = "Build the index again with `polymodal index build`."
            checkpoint = read_json_object(self.folder / SOURCE_FILE, fix).get("checkpoint")
            if not isinstance(checkpoint, str) or not checkpoint:
                raise ValueError(f"{self.folder / SOURCE_FILE} names no checkpoint. {fix}")
        model, _ = load_joint_checkpoint(checkpoint)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.index: Index = load_index(self.folder, expect_model=model.fingerprint())
        self._files = self._image_files()
        self.root = Path(os.path.commonpath(list(self._files))) if self._files else None
        if self.root is not None and self.root in self._files:  # one file: its folder
            self.root = self.root.parent
        self._allowed = {p.resolve() for p in self._files}

    # --------------------------------------------------------------------- the queries

    def kinds(self) -> dict[str, str]:
        """Query kind -> the model modality that embeds it (one modality per kind)."""
        out: dict[str, str] = {}
        for m in self.model.modalities:
            kind = self.model.config[m].spec.kind
            if kind in (ModalityKind.TEXT, ModalityKind.IMAGE, ModalityKind.AUDIO):
                out.setdefault(kind.value, m)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items": len(self.index),
            "modality": self.index.modality,
            "queries": sorted(self.kinds()),
            "accept": {k: list(EXTENSIONS[ModalityKind(k)]) for k in self.kinds() if k != "text"},
        }

    def parse(self, text: Any, uploads: Mapping[str, Upload], k: Any) -> Query:
        """The :class:`Query` of a request with a ``text`` or one uploaded file."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise RequestError(400, f"k: expected an integer in 1..{MAX_K}, got {k!r}.", "k")
        kinds = self.kinds()
        given = (["text"] if text is not None else []) + list(uploads)
        if len(given) != 1:
            raise RequestError(
                400,
                f"query: give exactly one of {sorted(kinds)}, got {given or 'none'}.",
                "query",
            )
        kind = given[0]
        if kind not in kinds:
            raise RequestError(
                400,
                f"{kind}: the index's model cannot embed a {kind} query; it takes {sorted(kinds)}.",
                kind,
            )
        modality = kinds[kind]
        if kind == "text":
            if not isinstance(text, str) or not text.strip():
                raise RequestError(400, "text: give the words to search for.", "text")
            if len(text) > 10_000:
                raise RequestError(413, "text: a query is at most 10,000 characters.", "text")
            return Query(modality, text, k)
        spec = self.model.config[modality].spec
        value, _ = decode_upload(uploads[kind], spec)
        return Query(modality, value, k)

    def run_batch(self, queries: list[Query]) -> list[dict[str, Any]]:
        """Embed ``queries`` (one forward pass per modality) and search the index."""
        z = torch.zeros(len(queries), self.model.dim)  # (Q, D)
        by_modality: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_modality.setdefault(q.modality, []).append(i)
        with torch.no_grad():
            for modality, rows in sorted(by_modality.items()):
                kind = self.model.config[modality].spec.kind
                if kind is ModalityKind.AUDIO:  # lengths differ: one at a time
                    for i in rows:
                        z[i] = self.model.encode(modality, _audio_batch(queries[i].value))[0]
                    continue
                values = [queries[i].value for i in rows]
                present = torch.ones(len(rows), dtype=torch.bool)
                batch = (
                    ModalityBatch([str(v) for v in values], present)
                    if kind is ModalityKind.TEXT
                    else ModalityBatch(
                        torch.stack([v for v in values if isinstance(v, Tensor)]), present
                    )
                ).to(self.device)
                z[rows] = self.model.encode(modality, batch).float().cpu()
        k = max(q.k for q in queries)
        result = self.index.search(z, k, modality=queries[0].modality)
        out = []
        for i, q in enumerate(queries):
            hits = []
            for rank, (item_id, meta, score) in enumerate(
                zip(result.ids[i], result.metadata[i], result.scores[i].tolist(), strict=False), 1
            ):
                if rank > q.k:
                    break
                hits.append(self._hit(rank, item_id, meta, score))
            out.append({"index": self.name, "hits": hits})
        return out

    def _hit(self, rank: int, item_id: str, meta: dict[str, Any], score: float) -> dict[str, Any]:
        captions = [str(meta["text"])] if meta.get("text") else []
        captions += [str(c) for c in meta.get("captions", [])]
        return {
            "rank": rank,
            "id": item_id,
            "score": round(float(score), 6),
            "example": meta.get("example"),
            "captions": captions,
            "thumbnail": self._thumbnail_url(meta),
        }

    # -------------------------------------------------------------------- thumbnails

    def _image_files(self) -> set[Path]:
        """The absolute (unresolved) image files the index's items name."""
        files = set()
        for meta in self.index.metadata:
            path = meta.get("path") if self.index.modality == "image" else meta.get("image_path")
            if (
                isinstance(path, str)
                and Path(path).suffix.lower() in EXTENSIONS[ModalityKind.IMAGE]
            ):
                files.add(Path(os.path.abspath(path)))
        return files

    def _thumbnail_url(self, meta: dict[str, Any]) -> str | None:
        path = meta.get("path") if self.index.modality == "image" else meta.get("image_path")
        if not isinstance(path, str) or self.root is None:
            return None
        full = Path(os.path.abspath(path))
        if full not in self._files:
            return None
        rel = full.relative_to(self.root).as_posix()
        return f"/thumbnails/{quote(self.name)}/{quote(rel)}"

    def thumbnail(self, rel: str) -> Path | None:
        """The file of the URL path ``rel``, or ``None`` unless it is one of the index's
        images, inside its image folder once every link is resolved."""
        if self.root is None or not rel or "\x00" in rel or "\\" in rel:
            return None
        parts = PurePosixPath(rel)
        if parts.is_absolute() or any(p in ("..", ".", "") for p in rel.split("/")):
            return None
        candidate = self.root.joinpath(*parts.parts)
        if candidate not in self._files:
            return None
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if resolved not in self._allowed or not resolved.is_file():
            return None
        if not resolved.is_relative_to(self.root.resolve()):
            return None  # a link out of the index's image folder
        return resolved


def _audio_batch(wave: str | Tensor) -> ModalityBatch:
    assert isinstance(wave, Tensor)
    present = torch.ones(1, dtype=torch.bool)
    return ModalityBatch(
        wave[None],
        present,
        lengths=torch.tensor([wave.shape[0]]),
        mask=torch.ones(1, wave.shape[0], dtype=torch.bool),
    )
