"""Image and video captioning, in one place: a cross-attention decoder on frozen features.

=================== =================================================================
file                holds
=================== =================================================================
``tokenizer.py``    :class:`CaptionTokenizer` (MiniLM WordPiece, vocabulary cut to the
                    training captions)
``model.py``        :class:`CaptionModelConfig`, :class:`CaptionDecoder` (pre-norm,
                    causal self-attention, cross-attention, KV cache)
``decoding.py``     :class:`DecodeConfig`, greedy and beam search (batched, cached)
``metrics.py``      corpus BLEU-1..4 and CIDEr-D
``features.py``     the frozen image encoder's feature sequences, cached
``captioner.py``    :func:`load_captioner`: caption images and videos from a checkpoint
``train.py``        ``task: captioning`` on the one loop (imports :mod:`polymodal.training`)
=================== =================================================================

Captioning from a checkpoint (``polymodal caption``) uses everything here but
``train.py``, so inference never imports training.
"""
