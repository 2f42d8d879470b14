"""Batched caption decoding with a KV cache: greedy and beam search.

Both decode a batch of images at once, one token per step, the decoder's self-attention
keys/values of earlier steps kept in a :class:`~polymodal.captioning.model.DecoderCache`
(the cross-attention keys/values of the image features are computed once).

Beam search (``beam_size`` K): every image keeps K hypotheses; each step scores all K x V
continuations by summed log-probability and takes the best 2K; one ending in ``[EOS]``
among the best K is finished, with the score ``logp / ((5 + length) / 6) ** alpha``
(GNMT's length penalty, ``length_penalty`` = alpha; 0 ranks by summed log-probability),
the others continue, K of them.  An image is done when it has K finished hypotheses;
the best finished one is its caption.  With K = 1 this is greedy decoding, token for token.

``min_length`` forbids ``[EOS]`` before that many tokens; ``no_repeat_ngram`` n > 0 forbids
a token that would repeat an n-gram of the hypothesis ("a dog in a dog in ..."), in both
greedy and beam decoding.  No decoder emits ``[UNK]`` (a piece too rare to keep in the
vocabulary says nothing a reader can use), ``[PAD]`` or ``[BOS]``.

:func:`sample` draws captions from the model's distribution instead (self-critical
training, :mod:`polymodal.captioning.scst`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polymodal.captioning.model import CaptionDecoder
from polymodal.captioning.tokenizer import BOS, EOS, PAD, UNK, CaptionTokenizer
from polymodal.config import Config, param


@dataclass(frozen=True, kw_only=True)
class DecodeConfig(Config):
    """How captions are generated.

    Args:
        beam_size: hypotheses kept per image (1: greedy).
        length_penalty: alpha of the length penalty ``((5 + length) / 6) ** alpha``;
            larger favours longer captions; 0 ranks by summed log-probability.
        no_repeat_ngram: forbid repeating any n-gram of this size (0: allow repeats).
        min_length: the fewest word pieces before ``[EOS]`` (an undertrained model's
            likeliest caption is often the empty one).
        max_length: the longest caption in tokens, ``[BOS]``/``[EOS]`` included (``None``:
            the model's ``max_length``).
        batch_size: images decoded together.
    """

    beam_size: int = param(3, ge=1)
    length_penalty: float = param(0.0, ge=0)
    no_repeat_ngram: int = param(3, ge=0)
    min_length: int = param(1, ge=0)
    max_length: int | None = param(None, ge=3)
    batch_size: int = param(100, ge=1)


def _ban_repeats(logp: Tensor, hyps: list[list[int]], n: int) -> None:
    """Set to -inf the tokens that would repeat an ``n``-gram of each hypothesis."""
    if n <= 0:
        return
    for row, h in enumerate(hyps):
        if len(h) < n:
            continue
        prefix = tuple(h[len(h) - n + 1 :])
        banned = [h[i + n - 1] for i in range(len(h) - n + 1) if tuple(h[i : i + n - 1]) == prefix]
        if banned:
            logp[row, banned] = float("-inf")


def _log_probs(logits: Tensor, last: bool, too_short: bool) -> Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    logp[:, PAD] = float("-inf")
    logp[:, BOS] = float("-inf")
    logp[:, UNK] = float("-inf")
    if too_short:
        logp[:, EOS] = float("-inf")
    if last:  # the final position must end the caption
        eos = logp[:, EOS].clone()
        logp.fill_(float("-inf"))
        logp[:, EOS] = eos
    return logp


@torch.no_grad()
def greedy(
    model: CaptionDecoder,
    features: Tensor,
    max_length: int,
    no_repeat_ngram: int = 0,
    min_length: int = 0,
) -> list[list[int]]:
    """The most likely next token at every step, until ``[EOS]``.

    Shape:
        features: (B, L, F); output: B token lists (no ``[BOS]``/``[EOS]``)
    """
    b = features.shape[0]
    cache = model.start(features)
    tokens = torch.full((b, 1), BOS, dtype=torch.long, device=features.device)
    hyps: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    for t in range(max_length - 1):
        logits, cache = model.step(tokens, cache)
        logp = _log_probs(logits, t == max_length - 2, t < min_length)
        _ban_repeats(logp, hyps, no_repeat_ngram)
        nxt = logp.argmax(-1)  # (B,)
        for i, tok in enumerate(nxt.tolist()):
            if not done[i]:
                if tok == EOS:
                    done[i] = True
                else:
                    hyps[i].append(tok)
        if all(done):
            break
        tokens = nxt[:, None]
    return hyps


@torch.no_grad()
def beam_search(
    model: CaptionDecoder,
    features: Tensor,
    max_length: int,
    beam_size: int = 3,
    length_penalty: float = 0.0,
    no_repeat_ngram: int = 0,
    min_length: int = 0,
) -> list[list[int]]:
    """The best finished hypothesis of a beam search per image (module docstring).

    Shape:
        features: (B, L, F); output: B token lists (no ``[BOS]``/``[EOS]``)
    """
    b, k = features.shape[0], beam_size
    device = features.device
    cache = model.start(features).select(torch.arange(b, device=device).repeat_interleave(k))
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the K beams start as one hypothesis
    hyps: list[list[int]] = [[] for _ in range(b * k)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    tokens = torch.full((b * k, 1), BOS, dtype=torch.long, device=device)
    for t in range(max_length - 1):
        logits, cache = model.step(tokens, cache)
        logp = _log_probs(logits, t == max_length - 2, t < min_length)  # (B*K, V)
        _ban_repeats(logp, hyps, no_repeat_ngram)
        v = logp.shape[1]
        cand = (scores.view(-1, 1) + logp).view(b, k * v)  # (B, K*V)
        top_s, top_i = cand.topk(min(2 * k, k * v), dim=1)  # (B, 2K)
        new_rows, new_tokens, new_scores = [], [], []
        new_hyps: list[list[int]] = []
        for i, (ss, ii) in enumerate(zip(top_s.tolist(), top_i.tolist(), strict=True)):
            kept = 0
            for rank, (s, idx) in enumerate(zip(ss, ii, strict=True)):
                row, tok = i * k + idx // v, idx % v
                if done[i] or s == float("-inf"):
                    break
                if tok == EOS:
                    if rank < k:
                        lp = ((5.0 + len(hyps[row]) + 1) / 6.0) ** length_penalty
                        finished[i].append((s / lp, hyps[row]))
                    continue
                new_rows.append(row)
                new_tokens.append(tok)
                new_scores.append(s)
                new_hyps.append([*hyps[row], tok])
                kept += 1
                if kept == k:
                    break
            if len(finished[i]) >= k:
                done[i] = True
            while kept < k:  # a done image (or too few live candidates): dead filler beams
                new_rows.append(i * k)
                new_tokens.append(EOS)
                new_scores.append(float("-inf"))
                new_hyps.append([])
                kept += 1
        if all(done):
            break
        rows = torch.tensor(new_rows, device=device)
        cache = cache.select(rows)
        scores = torch.tensor(new_scores, device=device).view(b, k)
        tokens = torch.tensor(new_tokens, device=device)[:, None]
        hyps = new_hyps
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


@torch.no_grad()
def sample(
    model: CaptionDecoder,
    features: Tensor,
    max_length: int,
    samples: int,
    generator: torch.Generator,
    min_length: int = 1,
) -> Tensor:
    """``samples`` captions per image drawn token by token from the model's distribution.

    Args:
        model: the decoder (its train/eval mode is kept: call ``eval()`` for no dropout).
        features: the images' feature sequences.
        max_length: the longest caption in tokens, ``[BOS]``/``[EOS]`` included.
        samples: captions per image.
        generator: the random generator of the draws (a CPU generator).
        min_length: the fewest word pieces before ``[EOS]``.

    Shape:
        features: (B, L, F); output: (B * samples, T) long, ``[BOS]`` first, each caption
        closed by ``[EOS]`` and right-padded with ``[PAD]``, images in order (the
        ``samples`` captions of image 0 first), T <= ``max_length``
    """
    b = features.shape[0] * samples
    device = features.device
    rows = torch.arange(features.shape[0], device=device).repeat_interleave(samples)
    cache = model.start(features).select(rows)
    out = torch.full((b, max_length), PAD, dtype=torch.long)
    out[:, 0] = BOS
    tokens = out[:, :1].to(device)
    live = torch.ones(b, dtype=torch.bool)
    for t in range(max_length - 1):
        logits, cache = model.step(tokens, cache)
        logp = _log_probs(logits, t == max_length - 2, t < min_length)
        nxt = torch.multinomial(logp.exp().cpu(), 1, generator=generator)[:, 0]  # (N,)
        out[live, t + 1] = nxt[live]
        live &= nxt != EOS
        if not live.any():
            return out[:, : t + 2].to(device)
        tokens = nxt[:, None].to(device)
    return out.to(device)


@torch.no_grad()
def generate(
    model: CaptionDecoder,
    features: Tensor,
    tokenizer: CaptionTokenizer,
    config: DecodeConfig | None = None,
) -> list[str]:
    """Captions of every image of ``features``, ``config.batch_size`` images at a time.

    Shape:
        features: (N, L, F) on the model's device; output: N strings
    """
    cfg = DecodeConfig() if config is None else config
    max_length = model.config.max_length if cfg.max_length is None else cfg.max_length
    max_length = min(max_length, model.config.max_length)
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for s in range(0, features.shape[0], cfg.batch_size):
            chunk = features[s : s + cfg.batch_size]
            if cfg.beam_size == 1:
                ids = greedy(model, chunk, max_length, cfg.no_repeat_ngram, cfg.min_length)
            else:
                ids = beam_search(
                    model,
                    chunk,
                    max_length,
                    cfg.beam_size,
                    cfg.length_penalty,
                    cfg.no_repeat_ngram,
                    cfg.min_length,
                )
            out += [tokenizer.decode(i) for i in ids]
    finally:
        model.train(was_training)
    return out


def keyframes(
    frames: Tensor, threshold: float, last: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Which frames start a new shot: the first, and each that differs from the last kept one.

    A frame's difference is the mean absolute difference of 32 x 32 grey thumbnails (pixel
    values in [0, 1]); a cut between two scenes is typically above 0.1, a still or slowly
    moving shot below 0.03.  ``threshold`` 0 keeps every frame.

    Args:
        frames: consecutive video frames, values in [0, 1].
        threshold: the smallest difference that makes a keyframe (>= 0).
        last: the thumbnail of the last keyframe of an earlier chunk (``None``: none yet).

    Returns:
        ``(keep, last)``: a (n,) bool mask, and the last keyframe's thumbnail for the next
        chunk.

    Shape:
        frames: (n, 3, H, W); keep: (n,); last: (32, 32)
    """
    if not threshold >= 0:
        raise ValueError(f"keyframes: threshold must be >= 0, got {threshold!r}.")
    grey = frames.float().mean(1, keepdim=True)  # (n, 1, H, W)
    thumbs = torch.nn.functional.adaptive_avg_pool2d(grey, 32)[:, 0]  # (n, 32, 32)
    keep = torch.zeros(frames.shape[0], dtype=torch.bool)
    for i, thumb in enumerate(thumbs):
        if last is None or threshold == 0 or float((thumb - last).abs().mean()) > threshold:
            keep[i] = True
            last = thumb
    return keep, last


def merge_repeats(captions: Sequence[str], times: Sequence[float], end: float) -> list[dict]:
    """Consecutive equal captions of a video's frames as time ranges.

    Args:
        captions: one caption per sampled frame, in time order.
        times: each frame's time in seconds.
        end: the video's end time (the last range's end).

    Returns:
        ``[{"start": s, "end": e, "caption": c}, ...]``, one per run of equal captions.
    """
    if len(captions) != len(times):
        raise ValueError(f"merge_repeats: {len(captions)} captions but {len(times)} frame times.")
    out: list[dict] = []
    for c, t in zip(captions, times, strict=True):
        if out and out[-1]["caption"] == c:
            continue
        if out:
            out[-1]["end"] = float(t)
        out.append({"start": float(t), "end": float(end), "caption": c})
    return out


__all__ = [
    "DecodeConfig",
    "beam_search",
    "generate",
    "greedy",
    "keyframes",
    "merge_repeats",
    "sample",
]
