"""Fine-tuning encoders' last blocks on cached stem outputs (``trainable_layers``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.data.modality import ModalitySpec
from polymodal.data.sample import ModalityBatch
from polymodal.encoders.image import EfficientNetLite0
from polymodal.encoders.text import MiniLM
from polymodal.joint.checkpoint import load_joint_checkpoint
from polymodal.joint.features import LENGTHS_FILE, Ragged, cached_features, text_batch
from polymodal.joint.model import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.joint.pairs import (
    PairedFeatures,
    PairSetConfig,
    check_pairs,
    embed_rows,
    evaluate_pairs,
    pair_features,
)
from polymodal.joint.train import ContrastiveOptim, ContrastiveStrategy, JointTrainConfig
from polymodal.models.config import EncoderConfig
from polymodal.training.loop import Trainer

TEXTS = [
    "a dog runs across the grass",
    "two children play",
    "a man in a red jacket climbs a steep rock face near the sea",
    "",
]


def _text_batch() -> ModalityBatch:
    return text_batch(TEXTS)


def test_minilm_stem_then_tail_is_its_forward_and_only_the_tail_trains() -> None:
    frozen = MiniLM(ModalitySpec("text", "text"), cache=False).eval()
    tuned = MiniLM(ModalitySpec("text", "text"), trainable_layers=2).eval()
    assert tuned.has_stem and not frozen.has_stem
    with torch.no_grad():
        ref = frozen(_text_batch())
        seq, mask = tuned.forward_stem(_text_batch())
        out = tuned.forward_tail(seq, mask)
    assert seq.shape == (4, ref.mask.shape[1], 384) and torch.equal(mask, ref.mask)
    torch.testing.assert_close(out.pooled, ref.pooled)  # same weights: same sentence vectors
    torch.testing.assert_close(tuned(_text_batch()).sequence, ref.sequence)
    trained = {n.split(".")[3] for n, p in tuned.named_parameters() if p.requires_grad}
    assert trained == {"4", "5"}  # model.encoder.layer.<i>: the last two of six blocks
    with pytest.raises(TypeError, match=r"minilm has no frozen stem .* set trainable_layers"):
        frozen.forward_stem(_text_batch())


def test_minilm_tail_reads_only_real_tokens() -> None:
    tuned = MiniLM(ModalitySpec("text", "text"), trainable_layers=1).eval()
    with torch.no_grad():
        seq, mask = tuned.forward_stem(_text_batch())
        padded = torch.cat([seq, 5.0 * torch.ones(4, 3, 384)], dim=1)  # junk past the mask
        wide = torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], dim=1)
        a, b = tuned.forward_tail(seq, mask), tuned.forward_tail(padded, wide)
    torch.testing.assert_close(b.pooled, a.pooled)
    assert b.sequence.shape[1] == seq.shape[1] + 3 and float(b.sequence[:, -3:].abs().max()) == 0


def test_efficientnet_stem_then_tail_is_its_forward() -> None:
    spec = ModalitySpec("image", "image", shape=(3, 64, 96))
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    batch = ModalityBatch(images, torch.ones(2, dtype=torch.bool))
    ref = EfficientNetLite0(spec, disk_cache=False).eval()(batch)
    for layers, width in ((1, 320), (2, 192)):
        enc = EfficientNetLite0(spec, trainable_layers=layers).train()
        seq, mask = enc.forward_stem(batch)
        assert seq.shape == (2, 2 * 3, width) and bool(mask.all())  # a 2 x 3 map
        torch.testing.assert_close(enc.forward_tail(seq, mask).pooled, ref.pooled)
        # BatchNorms keep ImageNet statistics while training: train mode changes nothing here
        torch.testing.assert_close(enc(batch).pooled, ref.pooled)
    with pytest.raises(ValueError, match=r"got 5 steps, but images of 64x96 .* give a 2x3 map"):
        enc.forward_tail(seq[:, :5], mask[:, :5])
    with pytest.raises(ValueError, match=r"freeze=True contradicts trainable_layers=1"):
        EfficientNetLite0(spec, freeze=True, trainable_layers=1)
    with pytest.raises(ValueError, match=r"trainable_layers must be in \[0, 17\].*got 18"):
        EfficientNetLite0(spec, trainable_layers=18)


def test_ragged_rows_pad_and_mask() -> None:
    values = torch.arange(12.0).view(6, 2)  # three sequences of 1, 3 and 2 steps
    r = Ragged(values, torch.tensor([1, 3, 2]))
    seq, mask = r.rows(torch.tensor([2, 0]))
    assert seq.tolist() == [[[8.0, 9.0], [10.0, 11.0]], [[0.0, 1.0], [0.0, 0.0]]]
    assert mask.tolist() == [[True, True], [True, False]]
    assert len(r) == 3 and r.width == 2
    with pytest.raises(ValueError, match=r"lengths \(each >= 1\) must sum to the 6 rows"):
        Ragged(values, torch.tensor([1, 3, 3]))


def test_stem_cache_ignores_the_trained_weights_and_survives_damage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enc = MiniLM(ModalitySpec("text", "text"), trainable_layers=1)
    kw = dict(dataset="toy", split="train", modality="text_stem", encoder_name="minilm")

    def cache() -> object:
        ids = [f"t{i}" for i in range(4)]
        make = lambda pos: text_batch([TEXTS[i] for i in pos])  # noqa: E731
        return cached_features(enc, make, ids, root=tmp_path, batch_size=3, stem=True, **kw)  # type: ignore[arg-type]

    first = cache()
    ragged = first.ragged()  # type: ignore[attr-defined]
    seq, mask = enc.forward_stem(_text_batch())
    rows, rmask = ragged.rows(torch.arange(4))
    torch.testing.assert_close(rows, seq[:, : rows.shape[1]])
    assert torch.equal(rmask, mask[:, : rmask.shape[1]])
    with torch.no_grad():  # training the tail changes no stem output: the entry still hits
        enc.model.encoder.layer[5].output.dense.weight.add_(1.0)
    again = cache()
    assert again.hit and again.key == first.key  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"has 1\d+ trainable parameters"):
        cached_features(enc, lambda pos: _text_batch(), ["a"], **kw)  # type: ignore[arg-type]
    np.save(first.path / LENGTHS_FILE, np.array([1, 2], dtype=np.int64))  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        fixed = cache()
    assert not fixed.hit and "not 4 step counts" in caplog.text  # type: ignore[attr-defined]
    assert torch.equal(fixed.lengths, ragged.lengths)  # type: ignore[attr-defined]


def _joint(image_layers: int, text_layers: int) -> JointConfig:
    image = JointModalityConfig(
        ModalitySpec("image", "image", shape=(3, 64, 64)),
        EncoderConfig("efficientnet_lite0", {"trainable_layers": image_layers}),
        projection="linear",
    )
    text = JointModalityConfig(
        ModalitySpec("text", "text"),
        EncoderConfig("minilm", {"trainable_layers": text_layers}),
        projection="linear",
    )
    return JointConfig((image, text), dim=16)


@pytest.mark.usefixtures("data_root")
def test_joint_run_tunes_last_blocks_on_cached_stems_and_embeds_raw_inputs_alike(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = JointEmbeddingModel(_joint(1, 1))
    pset = PairSetConfig(
        dataset="flickr8k", other="text", options={"image_size": 64}, limit=8, val_split="val"
    )
    cfg = JointTrainConfig(
        model=model.config,
        pairs={"flickr8k": pset},
        optim=ContrastiveOptim(lr=1e-3, warmup_steps=0, epochs=2, batch_size=8, all_positives=True),
        patience=None,
        device="cpu",
        progress=False,
        output_dir=str(tmp_path / "run"),
        feature_cache=str(tmp_path / "features"),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = Trainer(cfg, ContrastiveStrategy(cfg, model)).fit()
    folders = sorted(p.name.split("-")[2] for p in (tmp_path / "features").iterdir())
    assert folders == ["image_stem"] * 3 + ["text_stem"] * 3  # train, val, test
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "encoders.text.model.encoder.layer.5.output.dense.weight" in changed
    assert "encoders.image.backbone._conv_head.weight" in changed
    assert not any(".layer.4." in k or "._blocks." in k or "running_" in k for k in changed)
    # the checkpoint embeds raw inputs as the run embedded the cached stems
    loaded, _ = load_joint_checkpoint(result.checkpoint)
    test = pair_features(loaded, pset, "image", "test", cache_root=str(tmp_path / "features"))
    assert isinstance(test.other_features, Ragged) and len(test.other_features) == 40
    with torch.no_grad():
        cached = embed_rows(loaded.eval(), "text", test.other_features, torch.arange(5))
        from polymodal.data.datasets import load_dataset

        ds = load_dataset("flickr8k", split="test", image_size=64)
        texts = [r.text for r in ds.text_rows("text", 1)]
        raw = loaded.encode("text", text_batch(texts))
    torch.testing.assert_close(cached, raw, atol=1e-5, rtol=1e-4)
    assert result.best_val is not None
    val = pair_features(loaded, pset, "image", "val", cache_root=str(tmp_path / "features"))
    assert evaluate_pairs(loaded, [val])["r1_mean"] == pytest.approx(result.best_val["r1_mean"])
    pooled = PairedFeatures("image", "text", torch.randn(2, 1280), torch.randn(2, 384))
    with pytest.raises(ValueError, match=r"are encoder outputs, but .* reads its frozen stem's"):
        check_pairs(loaded, [pooled], "training")


def test_token_dropout_leaves_tokens_out_while_training_only() -> None:
    text = JointModalityConfig(
        ModalitySpec("text", "text"),
        EncoderConfig("minilm", {"trainable_layers": 1}),
        projection="linear",
        token_dropout=0.999,  # every token but [CLS], at this seed
    )
    image = JointModalityConfig(
        ModalitySpec("image", "features", shape=(4,)), EncoderConfig("mlp", {"dim": 4})
    )
    torch.manual_seed(0)
    model = JointEmbeddingModel(JointConfig((image, text), dim=8))
    seq, mask = model.encoders["text"].forward_stem(_text_batch())
    with torch.no_grad():
        model.eval()
        plain = model.project_stem("text", seq, mask)
        only_cls = model.project_stem("text", seq[:, :1], mask[:, :1])
        model.train()
        model.encoders.eval()  # the block's own dropout off: only token dropout differs
        dropped = model.project_stem("text", seq, mask)
    torch.testing.assert_close(dropped, only_cls)
    assert float((dropped - plain).abs().max()) > 0.1
    with pytest.raises(ValueError, match=r"modalities\.image\.token_dropout needs a text"):
        JointModalityConfig(image.spec, image.encoder, token_dropout=0.1)
    frozen = JointModalityConfig(text.spec, EncoderConfig("minilm"), token_dropout=0.1)
    with pytest.raises(ValueError, match=r"has no frozen stem; set modalities\.text\.encoder"):
        JointEmbeddingModel(JointConfig((image, frozen), dim=8))
