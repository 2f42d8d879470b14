"""Caption metrics against hand-computed values (and nltk's corpus BLEU when installed)."""

from __future__ import annotations

import math

import pytest

from polymodal.captioning.metrics import (
    CiderD,
    caption_scores,
    caption_tokens,
    cider_d,
    corpus_bleu,
)


def test_tokens_lower_case_without_punctuation() -> None:
    assert caption_tokens("A dog's ball, in the PARK.") == [
        "a",
        "dogs",
        "ball",
        "in",
        "the",
        "park",
    ]


def test_bleu_by_hand() -> None:
    # unigrams: the(2, clipped 2) cat on mat match, sat does not -> 5/6
    # bigrams: "the cat", "on the", "the mat" of 5 -> 3/5; equal lengths: no brevity penalty
    b = corpus_bleu(["the cat sat on the mat"], [["the cat is on the mat"]], max_n=2)
    assert b["bleu_1"] == pytest.approx(5 / 6)
    assert b["bleu_2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))


def test_bleu_brevity_penalty_uses_the_closest_reference() -> None:
    # hypothesis of 2 words; references of 6 and 3 words: r = 3, BP = exp(1 - 3/2)
    b = corpus_bleu(["the cat"], [["the cat sat on the mat", "the cat sat"]], max_n=2)
    assert b["bleu_1"] == pytest.approx(math.exp(1 - 3 / 2))
    assert b["bleu_2"] == pytest.approx(math.exp(1 - 3 / 2))


def test_bleu_clips_counts_by_the_most_generous_reference() -> None:
    # "the" x4: at most 2 in one reference -> 2/4; BP: 4 words vs closest 4
    b = corpus_bleu(["the the the the"], [["the cat the dog", "a the b c"]], max_n=1)
    assert b["bleu_1"] == pytest.approx(0.5)


def test_bleu_is_zero_without_any_4gram_match() -> None:
    b = corpus_bleu(["a b c d e"], [["a b c x e"]])
    assert b["bleu_4"] == 0.0 and b["bleu_1"] == pytest.approx(0.8)


def test_bleu_matches_nltk() -> None:
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    hyps = [
        "a dog runs on the green grass",
        "two men play football in a park",
        "a little girl in pink smiles at the camera",
    ]
    refs = [
        ["a dog is running on the grass", "the dog runs in the green grass field"],
        ["two men are playing soccer in the park", "men play football in a big park"],
        ["a little girl smiles", "a girl in a pink dress smiles at the camera"],
    ]
    ours = corpus_bleu(hyps, refs)
    for n in range(1, 5):
        theirs = nltk_bleu.corpus_bleu(
            [[caption_tokens(r) for r in rs] for rs in refs],
            [caption_tokens(h) for h in hyps],
            weights=tuple([1 / n] * n),
        )
        assert ours[f"bleu_{n}"] == pytest.approx(theirs, abs=1e-12)


def test_cider_d_by_hand() -> None:
    # two images, unigrams only: idf = log 2 for every word of the references (df 1);
    # image 1 matches exactly: cos 1 -> 10; image 2 shares "c" of {c, d} vs {c, x}:
    # dot = log2^2, norms sqrt(2) log2 each -> 0.5 -> 5; mean 7.5
    refs = [["a b"], ["c d"]]
    assert cider_d(["a b", "c x"], refs, max_n=1) == pytest.approx(7.5)


def test_cider_d_length_penalty_and_clipping() -> None:
    refs = [["a b"], ["c d"]]
    # "a b b": tf(b) = 2 is clipped to the reference's 1 in the numerator, not the norm
    h = math.sqrt(1 + 4)  # norm of (1, 2) * log2
    expected = (1 + 1) / (h * math.sqrt(2)) * math.exp(-1 / 72) * 10
    assert cider_d(["a b b", "c d"], refs, max_n=1) == pytest.approx((expected + 10) / 2)


def test_caption_scores_in_percent_and_errors() -> None:
    s = caption_scores(["a dog runs", "a cat sleeps"], [["a dog runs"], ["a cat sleeps"]])
    assert s["bleu_1"] == pytest.approx(100.0) and s["bleu_2"] == pytest.approx(100.0)
    # cos 1 for n = 1..3, no 4-grams in a 3-word caption (0): 10 * 3/4, in percent
    assert s["cider_d"] == pytest.approx(750.0)
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="has no reference"):
        cider_d(["a"], [[]])


def test_cider_d_scorer_scores_each_image_as_the_corpus_score() -> None:
    refs = [["a dog runs", "a brown dog"], ["two kids play", "kids play football"], ["a man"]]
    hyps = ["a dog", "kids play", "a man climbs"]
    scorer = CiderD(refs)
    each = [scorer.score(h, i) for i, h in enumerate(hyps)]
    assert sum(each) / 3 == pytest.approx(cider_d(hyps, refs))
    assert scorer.score("a dog runs", 0) > scorer.score("a dog runs", 1) == 0.0
    with pytest.raises(ValueError, match="at least one reference"):
        CiderD([["a"], []])
