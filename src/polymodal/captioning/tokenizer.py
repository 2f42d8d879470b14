"""Caption tokens: MiniLM's uncased WordPiece, with the output vocabulary cut to the corpus.

The WordPiece tokeniser is all-MiniLM-L6-v2's (``tokenizer.json`` of the pretrained extra,
read offline with the ``tokenizers`` library, as ``text_transformer`` reads it).  Its
30,522 pieces would make the decoder's softmax the largest layer by far; a caption corpus
uses a few thousand, so :meth:`CaptionTokenizer.build` keeps the pieces seen at least
``min_count`` times in the training captions and maps the rest to ``[UNK]``.  The kept
pieces (their WordPiece ids, in the decoder's order) are the vocabulary saved with a
checkpoint.

Decoder ids: 0 ``[PAD]``, 1 ``[BOS]`` (WordPiece ``[CLS]``), 2 ``[EOS]`` (``[SEP]``),
3 ``[UNK]``, then the kept pieces by falling count.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

PAD, BOS, EOS, UNK = 0, 1, 2, 3
_SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")


def wordpiece(tokenizer_file: str | Path | None = None) -> Any:
    """The WordPiece ``tokenizers.Tokenizer`` (MiniLM's when ``tokenizer_file`` is ``None``)."""
    from tokenizers import Tokenizer

    from polymodal.encoders.text import minilm_dir

    path = Path(tokenizer_file) if tokenizer_file is not None else minilm_dir() / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"Caption tokenizer file {str(path)!r} does not exist; pass a tokenizers JSON "
            "file, or None for MiniLM's (needs the pretrained extra)."
        )
    return Tokenizer.from_file(str(path))


class CaptionTokenizer:
    """Text <-> decoder ids over a vocabulary of kept WordPiece pieces.

    Args:
        pieces: the WordPiece ids of decoder ids 4, 5, ... (see the module docstring).
        tokenizer_file: the ``tokenizers`` JSON file (``None``: MiniLM's).
    """

    def __init__(self, pieces: Sequence[int], tokenizer_file: str | Path | None = None) -> None:
        self.wp = wordpiece(tokenizer_file)
        self.wp.no_padding()
        self.wp.no_truncation()
        special = [self.wp.token_to_id(t) for t in _SPECIALS]
        if any(s is None for s in special):
            raise ValueError(
                f"Caption tokenizer: the WordPiece vocabulary lacks one of {list(_SPECIALS)}."
            )
        self.special = [int(s) for s in special]
        self.pieces = [int(p) for p in pieces]
        self.to_wp = self.special + self.pieces  # decoder id -> WordPiece id
        self.from_wp = {wp: i for i, wp in enumerate(self.to_wp)}

    @classmethod
    def build(
        cls, captions: Sequence[str], min_count: int = 1, tokenizer_file: str | Path | None = None
    ) -> CaptionTokenizer:
        """Keep the pieces that occur ``min_count`` times or more in ``captions``."""
        tok = cls([], tokenizer_file)
        counts: Counter[int] = Counter()
        for enc in tok.wp.encode_batch(list(captions), add_special_tokens=False):
            counts.update(enc.ids)
        special = set(tok.special)
        kept = [p for p, c in counts.most_common() if c >= min_count and p not in special]
        return cls(kept, tokenizer_file)

    def __len__(self) -> int:
        return len(self.to_wp)

    def encode(self, texts: Sequence[str], max_length: int) -> Tensor:
        """``[BOS] pieces... [EOS]`` per text, cut to ``max_length`` ids and right-padded.

        Shape:
            output: (N, T) long, T <= ``max_length`` (the longest encoded text).
        """
        encs = self.wp.encode_batch(list(texts), add_special_tokens=False)
        rows = [
            [*[BOS, *(self.from_wp.get(i, UNK) for i in e.ids)][: max_length - 1], EOS]
            for e in encs
        ]
        out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
        for k, r in enumerate(rows):
            out[k, : len(r)] = torch.tensor(r)
        return out

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of decoder ids, stopping at ``[EOS]``; ``[BOS]``/``[PAD]`` skipped."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        out: list[int] = []
        for i in values:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.to_wp[i])
        return str(self.wp.decode(out, skip_special_tokens=False))

    def to_json(self) -> str:
        """The vocabulary (kept WordPiece ids) as JSON, for a checkpoint."""
        return json.dumps({"pieces": self.pieces})

    @classmethod
    def from_json(cls, text: str, tokenizer_file: str | Path | None = None) -> CaptionTokenizer:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("pieces"), list):
            raise ValueError("A caption vocabulary is a JSON object {'pieces': [ids...]}.")
        return cls(data["pieces"], tokenizer_file)


__all__ = ["BOS", "EOS", "PAD", "UNK", "CaptionTokenizer", "wordpiece"]
