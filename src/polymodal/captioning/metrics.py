"""Caption metrics: corpus BLEU-1..4 (Papineni et al., 2002) and CIDEr-D (Vedantam et al., 2015).

Both are written here (no Java, no download): the reference toolkit ``pycocoevalcap`` is
not installed with polymodal, and ``nltk``/``sacrebleu`` (checked against in
``tests/test_captioning_metrics.py`` when installed) compute BLEU only.

Tokenisation (:func:`caption_tokens`) follows the COCO toolkit's PTB tokeniser in effect:
lower case, punctuation removed, split on white space.

BLEU, as the COCO toolkit and ``nltk.corpus_bleu`` compute it: clipped n-gram counts
summed over the corpus (each hypothesis n-gram counted at most as often as in any one of
its references), the geometric mean of the n-gram precisions 1..N, and one brevity
penalty ``exp(1 - r / c)`` when the total hypothesis length ``c`` is below ``r``, the sum
over hypotheses of the reference length closest to it (the shorter on a tie).

CIDEr-D, as ``pycocoevalcap/cider`` computes it: for n = 1..4 each sentence becomes a
TF-IDF vector of its n-grams (term frequency: the raw count; document frequency: the
number of *images* whose references contain the n-gram, over the reference corpus; idf
``log(images) - log(max(1, df))``); the similarity of a
hypothesis and a reference is ``sum(min(h, r) * r) / (|h| |r|)`` (the hypothesis's
weights clipped to the reference's), times ``exp(-(len_h - len_r)^2 / (2 sigma^2))``,
sigma = 6; averaged over references and n, times 10.  Scores are per image; the corpus
CIDEr-D is their mean.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_PUNCT = re.compile(r"[^\w\s]|_")

#: A sentence's n-grams: tuple of tokens -> count.
NGrams = Counter[tuple[str, ...]]


def caption_tokens(text: str) -> list[str]:
    """Lower-cased words of ``text``, punctuation removed (``"A dog's ball."`` -> ``['a',
    'dogs', 'ball']``)."""
    return _PUNCT.sub("", text.lower()).split()


def ngrams(tokens: Sequence[str], n: int) -> NGrams:
    """Counts of the ``n``-grams of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]], who: str) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{who}: got {len(hypotheses)} hypotheses but {len(references)} reference lists; "
            "pass one list of references per hypothesis."
        )
    if not hypotheses:
        raise ValueError(f"{who}: there are no hypotheses to score.")
    empty = [i for i, refs in enumerate(references) if not refs]
    if empty:
        raise ValueError(
            f"{who}: hypothesis {empty[0]} has no reference; every hypothesis needs at least one."
        )


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4
) -> dict[str, float]:
    """Corpus BLEU-1..``max_n`` of ``hypotheses`` against their ``references``.

    Args:
        hypotheses: one generated caption per image.
        references: the reference captions of each image (any number >= 1).
        max_n: the largest n-gram order.

    Returns:
        ``{"bleu_1": ..., "bleu_<max_n>": ...}`` as fractions in [0, 1]; an order with no
        matching n-gram scores 0 (no smoothing, as the COCO toolkit).
    """
    _check(hypotheses, references, "corpus_bleu")
    matched = [0] * max_n
    total = [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        h = caption_tokens(hyp)
        rs = [caption_tokens(r) for r in refs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(h, n)
            best: NGrams = Counter()
            for r in rs:
                best |= ngrams(r, n)  # max count over the references
            matched[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            total[n - 1] += max(0, len(h) - n + 1)
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / max(hyp_len, 1))
    out: dict[str, float] = {}
    log_sum = 0.0
    for n in range(1, max_n + 1):
        if matched[n - 1] == 0 or total[n - 1] == 0:
            log_sum = -math.inf
        else:
            log_sum += math.log(matched[n - 1] / total[n - 1])
        out[f"bleu_{n}"] = 0.0 if log_sum == -math.inf else bp * math.exp(log_sum / n)
    return out


def _tfidf(
    counts: Sequence[NGrams], df: Counter[tuple[str, ...]], log_n: float
) -> list[tuple[dict[tuple[str, ...], float], float]]:
    """Per order n: the TF-IDF vector of one sentence and its norm."""
    out = []
    for c in counts:
        vec = {g: tf * (log_n - math.log(max(1.0, df[g]))) for g, tf in c.items()}
        out.append((vec, math.sqrt(sum(v * v for v in vec.values()))))
    return out


class CiderD:
    """CIDEr-D scorer over a fixed reference corpus (module docstring).

    The document frequencies and the references' TF-IDF vectors are computed once, so many
    hypotheses can be scored against the same images cheaply (self-critical training scores
    every sampled caption of every step against its training references).

    Args:
        references: the reference captions of each image (the corpus: document frequencies
            count each image's set of references once).
        sigma: of the length penalty.
        max_n: the largest n-gram order.
    """

    def __init__(
        self, references: Sequence[Sequence[str]], sigma: float = 6.0, max_n: int = 4
    ) -> None:
        if not references or any(not rs for rs in references):
            raise ValueError("CiderD: every image needs at least one reference caption.")
        self.sigma, self.max_n = sigma, max_n
        orders = range(1, max_n + 1)
        refs = [[caption_tokens(r) for r in rs] for rs in references]
        counts = [[[ngrams(r, n) for n in orders] for r in rs] for rs in refs]
        self.df: Counter[tuple[str, ...]] = Counter()
        for image_counts in counts:
            self.df.update({g for r in image_counts for c in r for g in c})
        self.log_n = math.log(float(len(references)))
        self.refs = [
            [(len(r), _tfidf(rc, self.df, self.log_n)) for r, rc in zip(rs, cs, strict=True)]
            for rs, cs in zip(refs, counts, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.refs)

    def score(self, hypothesis: str, image: int) -> float:
        """The CIDEr-D score of ``hypothesis`` against image ``image``'s references."""
        h = caption_tokens(hypothesis)
        h_vecs = _tfidf([ngrams(h, n) for n in range(1, self.max_n + 1)], self.df, self.log_n)
        total = 0.0
        for length, r_vecs in self.refs[image]:
            penalty = math.exp(-((len(h) - length) ** 2) / (2 * self.sigma**2))
            for (hv, hn), (rv, rn) in zip(h_vecs, r_vecs, strict=True):
                if hn != 0 and rn != 0:
                    dot = sum(min(v, rv[g]) * rv[g] for g, v in hv.items() if g in rv)
                    total += dot / (hn * rn) * penalty
        return total / self.max_n / len(self.refs[image]) * 10.0


def cider_d(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    sigma: float = 6.0,
    max_n: int = 4,
) -> float:
    """Corpus CIDEr-D: the mean over images of each hypothesis's CIDEr-D score.

    Document frequencies are counted over ``references`` (each image's set of references
    counts an n-gram once), so the score depends on the corpus, as in the toolkit.

    Returns:
        the mean score (the toolkit's scale: x10 included; good models score ~0.5-1.2).
    """
    _check(hypotheses, references, "cider_d")
    scorer = CiderD(references, sigma, max_n)
    return sum(scorer.score(h, i) for i, h in enumerate(hypotheses)) / len(hypotheses)


def caption_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """BLEU-1..4 and CIDEr-D in percent (x100): ``bleu_1``..``bleu_4``, ``cider_d``."""
    out = {k: 100.0 * v for k, v in corpus_bleu(hypotheses, references).items()}
    out["cider_d"] = 100.0 * cider_d(hypotheses, references)
    return out


__all__ = ["CiderD", "caption_scores", "caption_tokens", "cider_d", "corpus_bleu", "ngrams"]
