"""The caption decoder, its tokenizer and decoding: round trips, the KV cache, beam = greedy."""

from __future__ import annotations

import itertools

import pytest
import torch

from polymodal.captioning.decoding import (
    DecodeConfig,
    beam_search,
    generate,
    greedy,
    keyframes,
    merge_repeats,
    sample,
)
from polymodal.captioning.metrics import CiderD
from polymodal.captioning.model import CaptionDecoder, CaptionModelConfig
from polymodal.captioning.scst import leave_one_out_advantages, scst_loss, sequence_log_probs
from polymodal.captioning.tokenizer import BOS, EOS, PAD, UNK, CaptionTokenizer

CAPTIONS = [
    "a dog runs through the grass .",
    "two children are playing football in a park",
    "a man in a red jacket climbs a rock",
    "a dog jumps over a fence",
]


@pytest.fixture(scope="module")
def tokenizer() -> CaptionTokenizer:
    return CaptionTokenizer.build(CAPTIONS, min_count=1)


def _model(vocab: int, seed: int = 0, max_length: int = 12) -> CaptionDecoder:
    torch.manual_seed(seed)
    cfg = CaptionModelConfig(
        dim=32, num_layers=2, num_heads=4, max_length=max_length, memory_length=6
    )
    return CaptionDecoder(cfg, vocab, feature_dim=16).eval()


def test_tokenize_detokenize_round_trip(tokenizer: CaptionTokenizer) -> None:
    ids = tokenizer.encode(CAPTIONS, max_length=20)  # (N, T)
    assert ids[:, 0].eq(BOS).all()
    assert (
        [tokenizer.decode(row) for row in ids]
        == [
            "a dog runs through the grass.",  # WordPiece decoding joins the full stop
            *CAPTIONS[1:],
        ]
    )
    assert (ids == EOS).sum(1).eq(1).all() and ids[0, -1] in (EOS, PAD)


def test_unknown_pieces_truncation_and_saved_vocabulary(tokenizer: CaptionTokenizer) -> None:
    ids = tokenizer.encode(["a dog eats a sandwich", "a dog"], max_length=4)
    assert ids.shape == (2, 4)
    assert ids[0].tolist()[-1] == EOS and tokenizer.decode(ids[1]) == "a dog"
    assert UNK in tokenizer.encode(["a zebra"], max_length=10)[0].tolist()
    again = CaptionTokenizer.from_json(tokenizer.to_json())
    assert again.to_wp == tokenizer.to_wp and len(again) == len(tokenizer)
    with pytest.raises(ValueError, match="pieces"):
        CaptionTokenizer.from_json("[1, 2]")


def test_kv_cache_gives_the_logits_of_recomputation() -> None:
    model = _model(vocab=40)
    feats = torch.randn(3, 6, 16)
    tokens = torch.randint(4, 40, (3, 9))
    tokens[:, 0] = BOS
    full = model(feats, tokens)  # (3, 9, 40)
    cache = model.start(feats)
    for t in range(tokens.shape[1]):
        step, cache = model.step(tokens[:, t : t + 1], cache)
        torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)
    # a reordered cache follows its rows (what beam search relies on)
    rows = torch.tensor([2, 0])
    cache2 = model.start(feats)
    _, cache2 = model.step(tokens[:, :1], cache2)
    cache2 = cache2.select(rows)
    step, _ = model.step(tokens[rows, 1:2], cache2)
    torch.testing.assert_close(step, full[rows, 1], atol=1e-5, rtol=1e-5)


def test_repeated_memory_matches_one_image_per_caption() -> None:
    model = _model(vocab=30)
    feats = torch.randn(2, 6, 16)
    tokens = torch.randint(4, 30, (6, 5))
    shared = model(feats, tokens, repeats=3)
    each = model(feats.repeat_interleave(3, 0), tokens)
    torch.testing.assert_close(shared, each, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("no_repeat", "min_length"), [(0, 0), (2, 3)])
def test_beam_search_of_one_beam_is_greedy(seed: int, no_repeat: int, min_length: int) -> None:
    model = _model(vocab=25, seed=seed)
    feats = torch.randn(5, 6, 16)
    g = greedy(model, feats, 12, no_repeat, min_length)
    b = beam_search(model, feats, 12, 1, no_repeat_ngram=no_repeat, min_length=min_length)
    assert b == g
    assert all(min_length <= len(h) <= 10 for h in g) and any(len(h) > 0 for h in g)


def test_beam_search_finds_a_likelier_caption_and_bans_repeats() -> None:
    model = _model(vocab=25, seed=3)
    feats = torch.randn(6, 6, 16)

    def logp(hyps: list[list[int]]) -> torch.Tensor:
        out = []
        for i, h in enumerate(hyps):
            seq = torch.tensor([[BOS, *h, EOS]])
            lp = model(feats[i : i + 1], seq[:, :-1]).log_softmax(-1)[0]
            out.append(lp.gather(1, seq[0, 1:, None]).sum())
        return torch.stack(out)

    g = greedy(model, feats, 12)
    b = beam_search(model, feats, 12, beam_size=4)
    assert logp(b).sum() >= logp(g).sum() - 1e-4
    for h in beam_search(model, feats, 12, beam_size=3, no_repeat_ngram=2):
        pairs = list(itertools.pairwise(h))
        assert len(pairs) == len(set(pairs))


def test_generate_decodes_text(tokenizer: CaptionTokenizer) -> None:
    model = _model(vocab=len(tokenizer))
    out = generate(model, torch.randn(3, 6, 16), tokenizer, DecodeConfig(beam_size=2, batch_size=2))
    assert len(out) == 3 and all(isinstance(c, str) for c in out)


def test_decoders_never_emit_unknown_pieces() -> None:
    model = _model(vocab=25, seed=4)
    with torch.no_grad():  # make [UNK] by far the likeliest next piece everywhere
        model.norm.weight.zero_()
        model.norm.bias.fill_(1.0)  # every position's final state is all ones
        model.token.weight[UNK] = 1.0
    feats = torch.randn(4, 6, 16)
    assert model(feats, torch.full((4, 1), BOS))[:, 0].argmax(-1).eq(UNK).all()
    for hyps in (greedy(model, feats, 10), beam_search(model, feats, 10, beam_size=3)):
        assert all(UNK not in h for h in hyps)


def test_sampling_is_seeded_and_well_formed() -> None:
    model = _model(vocab=25, seed=5)
    feats = torch.randn(3, 6, 16)

    def draw(seed: int) -> torch.Tensor:
        return sample(model, feats, 12, 4, torch.Generator().manual_seed(seed), min_length=2)

    a = draw(0)
    assert a.shape[0] == 12 and a.shape[1] <= 12 and torch.equal(a, draw(0))
    assert not torch.equal(a, draw(1))
    assert a[:, 0].eq(BOS).all() and (a == EOS).sum(1).eq(1).all()
    for row in a.tolist():
        body = row[1 : row.index(EOS)]
        assert len(body) >= 2 and not {PAD, BOS, UNK, EOS} & set(body)
        assert set(row[row.index(EOS) + 1 :]) <= {PAD}


def test_sequence_log_probs_of_each_caption() -> None:
    model = _model(vocab=25, seed=6)
    feats = torch.randn(2, 6, 16)
    tokens = torch.tensor(
        [
            [BOS, 5, 6, EOS, PAD],
            [BOS, 7, EOS, PAD, PAD],
            [BOS, 8, 9, 10, EOS],
            [BOS, EOS, PAD, PAD, PAD],
        ]
    )
    got = sequence_log_probs(model, feats, tokens)  # 2 captions per image
    for i, row in enumerate(tokens.tolist()):
        n = row.index(EOS)
        lp = model(feats[i // 2 : i // 2 + 1], tokens[i : i + 1, :n]).log_softmax(-1)[0]
        want = lp.gather(1, tokens[i, 1 : n + 1, None])[:, 0]
        torch.testing.assert_close(got[i, :n], want, atol=1e-5, rtol=1e-5)
        assert got[i, n:].eq(0).all()


def test_leave_one_out_baseline() -> None:
    adv = leave_one_out_advantages(torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]))
    torch.testing.assert_close(adv, torch.tensor([[-1.5, 0.0, 1.5], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        leave_one_out_advantages(torch.ones(3, 1))


def test_self_critical_steps_raise_the_reward(tokenizer: CaptionTokenizer) -> None:
    # two images whose references are fixed captions: SCST must learn to say them
    refs = [[CAPTIONS[0]] * 2, [CAPTIONS[2]] * 2]
    scorer = CiderD([*refs, [CAPTIONS[1]], [CAPTIONS[3]]])  # 4 images: non-zero idf
    model = _model(vocab=len(tokenizer), seed=7).train()
    feats = torch.randn(2, 6, 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    rewards = []
    for _ in range(50):
        loss, reward = scst_loss(model, feats, [0, 1], scorer, tokenizer, 6, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rewards.append(reward)
    assert model.training  # sampling ran in eval mode and restored it
    assert sum(rewards[-10:]) / 10 > 1.4 * sum(rewards[:10]) / 10  # 0.73 -> 1.25


def test_keyframes_are_the_first_frame_of_each_shot() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 48, 64, generator=gen), torch.rand(3, 48, 64, generator=gen)
    a = a * 0.5  # a dark shot, then a brighter one: a cut
    still = [a + 0.01 * torch.rand(3, 48, 64, generator=gen) for _ in range(3)]  # noise only
    frames = torch.stack([*still, b, b, a])  # (6, 3, H, W)
    keep, last = keyframes(frames, 0.05)
    assert keep.tolist() == [True, False, False, True, False, True]
    assert last is not None and last.shape == (32, 32)
    keep, _ = keyframes(frames[:2], 0.05, last)  # the next chunk compares with chunk 1's last
    assert keep.tolist() == [False, False]
    assert keyframes(frames, 0.0)[0].all()
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        keyframes(frames, -1.0)


def test_merge_repeats_into_time_ranges() -> None:
    got = merge_repeats(["a dog", "a dog", "a cat", "a dog"], [0.0, 1.0, 2.0, 3.0], 4.0)
    assert got == [
        {"start": 0.0, "end": 2.0, "caption": "a dog"},
        {"start": 2.0, "end": 3.0, "caption": "a cat"},
        {"start": 3.0, "end": 4.0, "caption": "a dog"},
    ]
    with pytest.raises(ValueError, match="2 captions but 1 frame"):
        merge_repeats(["a", "b"], [0.0], 1.0)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"divisible by model\.num_heads"):
        CaptionModelConfig(dim=30, num_heads=4)
    model = _model(vocab=20)
    with pytest.raises(ValueError, match="expected"):
        model.start(torch.randn(1, 6, 8))
    with pytest.raises(ValueError, match="one new token"):
        cache = model.step(torch.full((1, 1), BOS), model.start(torch.randn(1, 6, 16)))[1]
        model.step(torch.full((1, 2), BOS), cache)


def test_captioning_from_a_checkpoint_never_imports_training() -> None:
    from tests.test_layout import _imported_by

    loaded = _imported_by(
        "polymodal.captioning.captioner", "polymodal.cli.caption", "polymodal.captioning"
    )
    assert "polymodal.captioning.model" in loaded
    assert [m for m in loaded if m.startswith("polymodal.training")] == []
    assert "polymodal.captioning.train" not in loaded
