"""Self-critical sequence training (SCST) of a caption decoder.

Cross-entropy with teacher forcing trains the decoder on the references' next words; it
never sees its own captions, and its objective is not the metric.  SCST (Rennie et al.,
2017, "Self-critical Sequence Training for Image Captioning") fine-tunes a decoder
trained that way with REINFORCE on its own samples, rewarded by CIDEr-D::

    for each image: draw K captions w_1..w_K from the model (temperature 1)
    r_k = CIDEr-D(w_k, the image's training references)      (document frequencies over
                                                               the training references)
    b_k = mean of the other K - 1 rewards                     (the baseline)
    loss = - sum_k (r_k - b_k) * sum_t log p(w_k,t | w_k,<t, image) / tokens

The baseline is the mean reward of the image's other samples (Luo, 2020, "A Better Variant
of Self-Critical Sequence Training"), instead of the reward of the greedy caption as in
Rennie et al.: it needs no extra decoding pass and is unbiased.  Samples are drawn without
dropout (the model in eval mode, as it decodes) and their log-probabilities computed with
it (train mode), so the gradient follows the policy that is deployed.

Used by ``task: captioning`` with ``optim.objective: scst``, usually starting from a
cross-entropy run (``init_from``), as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polymodal.captioning.decoding import sample
from polymodal.captioning.metrics import CiderD
from polymodal.captioning.model import CaptionDecoder
from polymodal.captioning.tokenizer import PAD, CaptionTokenizer


def leave_one_out_advantages(rewards: Tensor) -> Tensor:
    """Each sample's reward minus the mean reward of its image's other samples.

    Shape:
        rewards: (B, K), K >= 2 samples per image; output: (B, K)
    """
    k = rewards.shape[1]
    if k < 2:
        raise ValueError(f"SCST needs at least 2 samples per image for its baseline; got {k}.")
    return rewards - (rewards.sum(1, keepdim=True) - rewards) / (k - 1)


def sequence_log_probs(model: CaptionDecoder, features: Tensor, tokens: Tensor) -> Tensor:
    """Log-probability of each token of ``tokens`` after the ones before it, 0 at padding.

    Shape:
        features: (B, L, F); tokens: (B * K, T), ``[BOS]`` first, K captions per image;
        output: (B * K, T - 1)
    """
    k = tokens.shape[0] // features.shape[0]
    logits = model(features, tokens[:, :-1], k)  # (B*K, T-1, V)
    logp = torch.log_softmax(logits.float(), dim=-1)
    target = tokens[:, 1:]
    out = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B*K, T-1)
    return out.masked_fill(target == PAD, 0.0)


def scst_loss(
    model: CaptionDecoder,
    features: Tensor,
    images: Sequence[int],
    scorer: CiderD,
    tokenizer: CaptionTokenizer,
    samples: int,
    generator: torch.Generator,
) -> tuple[Tensor, float]:
    """The self-critical loss of one batch of images (module docstring).

    Args:
        model: the decoder, in train mode (restored after sampling in eval mode).
        features: the images' feature sequences.
        images: each image's index in ``scorer``'s references.
        scorer: CIDEr-D over the training references.
        tokenizer: turns the samples into text for the reward.
        samples: K captions drawn per image.
        generator: the draws' random generator.

    Returns:
        ``(loss, mean reward)``; the loss averages over the sampled tokens.

    Shape:
        features: (B, L, F)
    """
    was_training = model.training
    model.eval()
    try:
        tokens = sample(model, features, model.config.max_length, samples, generator)
    finally:
        model.train(was_training)
    texts = [tokenizer.decode(t) for t in tokens]
    rows = [i for i in images for _ in range(samples)]
    rewards = torch.tensor([scorer.score(t, i) for t, i in zip(texts, rows, strict=True)])
    advantage = leave_one_out_advantages(rewards.view(-1, samples)).flatten()  # (B*K,)
    logp = sequence_log_probs(model, features, tokens)  # (B*K, T-1)
    n_tokens = (tokens[:, 1:] != PAD).sum().clamp(min=1)
    loss = -(advantage.to(logp.device)[:, None] * logp).sum() / n_tokens
    return loss, float(rewards.mean())


__all__ = ["leave_one_out_advantages", "scst_loss", "sequence_log_probs"]
