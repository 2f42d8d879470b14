"""Zero-shot classification with prompts, on synthetic embeddings."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.modality import ModalityKind, ModalitySpec
from polymodal.joint import JointConfig, JointEmbeddingModel, JointModalityConfig
from polymodal.models.config import EncoderConfig
from polymodal.retrieval.zeroshot import (
    DIGIT_NAMES,
    IMAGE_DIGIT_TEMPLATES,
    build_prompts,
    class_embeddings,
    model_text_embedder,
    zero_shot_classify,
)


def _toy_text_embedder(dim: int = 16, seed: int = 0):  # type: ignore[no-untyped-def]
    """Each prompt -> the vector of the class name it contains, plus template noise."""
    g = torch.Generator().manual_seed(seed)
    class_vecs = {name: torch.randn(dim, generator=g) for name in DIGIT_NAMES}

    def embed(texts: list[str]) -> torch.Tensor:
        rows = []
        for t in texts:
            name = next(n for n in DIGIT_NAMES if f" {n}" in f" {t}".replace(".", " "))
            rows.append(class_vecs[name] + 0.1 * torch.randn(dim, generator=g))
        return torch.stack(rows)

    return embed, class_vecs


def test_build_prompts() -> None:
    prompts = build_prompts(["cat", "dog"], ["a photo of a {}.", "a {}"])
    assert prompts == [["a photo of a cat.", "a cat"], ["a photo of a dog.", "a dog"]]
    with pytest.raises(ValueError, match="must contain '\\{\\}'"):
        build_prompts(["cat"], ["a photo"])
    with pytest.raises(ValueError, match="Wrap a single template in a list"):
        build_prompts(["cat"], "a {}")


def test_classifies_synthetic_queries() -> None:
    embed, class_vecs = _toy_text_embedder()
    classes = class_embeddings(embed, DIGIT_NAMES, IMAGE_DIGIT_TEMPLATES)
    assert classes.shape == (10, 16)
    torch.testing.assert_close(classes.norm(dim=1), torch.ones(10))
    labels = torch.arange(10).repeat(5)  # (50,)
    g = torch.Generator().manual_seed(1)
    queries = torch.stack([class_vecs[DIGIT_NAMES[int(y)]] for y in labels])
    queries = queries + 0.2 * torch.randn(queries.shape, generator=g)
    result = zero_shot_classify(queries, classes, labels)
    assert result.accuracy == 1.0 and result.chance == pytest.approx(0.1)
    assert result.confusion.trace() == 50 and result.scores.shape == (50, 10)
    # Random queries land near chance.
    noise = zero_shot_classify(
        torch.randn(200, 16, generator=g), classes, torch.arange(10).repeat(20)
    )
    assert noise.accuracy < 0.3
    unlabelled = zero_shot_classify(queries, classes)
    assert torch.equal(unlabelled.predictions, result.predictions)


def test_errors() -> None:
    classes = torch.randn(3, 8)
    with pytest.raises(ValueError, match="queries have 4 dims but the class vectors 8"):
        zero_shot_classify(torch.randn(2, 4), classes)
    with pytest.raises(ValueError, match="2 labels for 3 queries"):
        zero_shot_classify(torch.randn(3, 8), classes, [0, 1])
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        zero_shot_classify(torch.randn(2, 8), classes, [0, 5])


def test_model_text_embedder_uses_the_joint_space() -> None:
    config = JointConfig(
        (
            JointModalityConfig(
                ModalitySpec("x", ModalityKind.TABULAR, shape=(3,)),
                EncoderConfig("mlp", {"dim": 4}),
            ),
            JointModalityConfig(
                ModalitySpec("caption", ModalityKind.TEXT),
                EncoderConfig("text_transformer", {"dim": 8, "num_layers": 1, "num_heads": 2}),
            ),
        ),
        dim=6,
    )
    model = JointEmbeddingModel(config).eval()
    embed = model_text_embedder(model, "caption")
    classes = class_embeddings(embed, ["zero", "one"], ["the digit {}."])
    assert classes.shape == (2, 6)
    with pytest.raises(ValueError, match="has no modality 'text'"):
        model_text_embedder(model)
