"""Zero-shot classification in a joint embedding space (CLIP-style prompts).

Each class is represented by the text embeddings of prompts built from templates
(``"a photo of the digit {}."`` with ``{}`` the class name), averaged over templates and
re-normalised; an example is assigned the class whose prompt embedding is most similar to
its own embedding.  Nothing is trained on the classes: the space was learned from other
data (Flickr8k captions, or another modality bound to the same anchor).

* :func:`build_prompts`: templates x class names -> prompts.
* :func:`class_embeddings`: prompts -> (C, D) class vectors, through any text embedder
  (``model_text_embedder(model)`` for a :class:`JointEmbeddingModel`).
* :func:`zero_shot_classify`: (N, D) query embeddings + (C, D) class vectors (+ labels)
  -> a :class:`ZeroShotResult` with accuracy, predictions and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.datasets.mnist import CLASS_NAMES
from polymodal.data.sample import ModalityBatch
from polymodal.joint.model import JointEmbeddingModel

#: Digit class names as words (MNIST, spoken digits): the mnist data set's class names.
DIGIT_NAMES: tuple[str, ...] = CLASS_NAMES
#: Prompts for images of digits.
IMAGE_DIGIT_TEMPLATES: tuple[str, ...] = (
    "a photo of the digit {}.",
    "a handwritten digit {}.",
    "a black and white picture of the number {}.",
    "the number {} written in white on a black background.",
)
#: Prompts for spoken digits.
AUDIO_DIGIT_TEMPLATES: tuple[str, ...] = (
    "a spoken digit {}.",
    "a person saying the number {}.",
    "a recording of the word {}.",
)

TextEmbedder = Callable[[list[str]], Tensor]


@dataclass(frozen=True)
class ZeroShotResult:
    """Zero-shot predictions and, with labels, their accuracy.

    Attributes:
        predictions: (N,) long, the predicted class index of each query.
        scores: (N, C) cosine similarity of each query to each class.
        accuracy: fraction of queries predicted right (``nan`` without labels).
        chance: accuracy of always predicting the most frequent label (``nan`` without
            labels); a zero-shot accuracy near it means the space does not separate the
            classes.
        confusion: (C, C) long counts, rows true class, columns predicted (zeros without
            labels).
    """

    predictions: Tensor
    scores: Tensor
    accuracy: float
    chance: float
    confusion: Tensor


def build_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """For each class, each template with ``{}`` replaced by the class name.

    Returns:
        C lists of T prompts.
    """
    if isinstance(class_names, str) or not class_names:
        raise ValueError(f"'class_names' must be a non-empty list of names, got {class_names!r}.")
    if isinstance(templates, str) or not templates:
        raise ValueError(
            f"'templates' must be a non-empty list of strings with '{{}}', got {templates!r}. "
            "Wrap a single template in a list."
        )
    for t in templates:
        if not isinstance(t, str) or "{}" not in t:
            raise ValueError(
                f"Every template must contain '{{}}' where the class name goes, got {t!r}."
            )
    return [[t.format(name) for t in templates] for name in class_names]


def model_text_embedder(model: JointEmbeddingModel, text_modality: str = "text") -> TextEmbedder:
    """A function embedding a list of strings with ``model``'s text modality (no grad)."""
    if text_modality not in model.modalities:
        raise ValueError(
            f"model_text_embedder: the model has no modality {text_modality!r}; it has "
            f"{model.modalities}. Pass text_modality=<the name of its text modality>."
        )

    def embed(texts: list[str]) -> Tensor:
        batch = ModalityBatch(list(texts), torch.ones(len(texts), dtype=torch.bool))
        with torch.no_grad():
            return model.encode(text_modality, batch)

    return embed


def class_embeddings(
    embed_text: TextEmbedder, class_names: Sequence[str], templates: Sequence[str]
) -> Tensor:
    """One unit vector per class: the normalised mean of its prompts' normalised embeddings.

    Shape:
        output: (C, D).
    """
    prompts = build_prompts(class_names, templates)
    flat = [p for group in prompts for p in group]
    z = F.normalize(embed_text(flat).float(), dim=-1)  # (C*T, D)
    z = z.view(len(prompts), len(templates), -1).mean(dim=1)  # (C, D)
    return F.normalize(z, dim=-1)


def zero_shot_classify(
    queries: Tensor, classes: Tensor, labels: Tensor | Sequence[int] | None = None
) -> ZeroShotResult:
    """Assign each query the most similar class.

    Args:
        queries: query embeddings (normalised here).
        classes: class vectors from :func:`class_embeddings`.
        labels: the true class index of each query, for accuracy and confusion.

    Shape:
        queries: (N, D); classes: (C, D); labels: (N,).
    """
    if not isinstance(queries, Tensor) or queries.dim() != 2 or queries.shape[0] == 0:
        raise ValueError("zero_shot_classify: 'queries' must be a non-empty (N, D) tensor.")
    if not isinstance(classes, Tensor) or classes.dim() != 2 or classes.shape[0] == 0:
        raise ValueError("zero_shot_classify: 'classes' must be a non-empty (C, D) tensor.")
    if queries.shape[1] != classes.shape[1]:
        raise ValueError(
            f"zero_shot_classify: queries have {queries.shape[1]} dims but the class vectors "
            f"{classes.shape[1]}; embed both with the same joint model."
        )
    num_classes = classes.shape[0]
    scores = F.normalize(queries.float(), dim=-1) @ F.normalize(classes.float(), dim=-1).T
    predictions = scores.argmax(dim=1)  # (N,)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    if labels is None:
        return ZeroShotResult(predictions, scores, float("nan"), float("nan"), confusion)
    y = torch.as_tensor(labels).long().flatten()
    if y.shape[0] != queries.shape[0]:
        raise ValueError(
            f"zero_shot_classify: {y.shape[0]} labels for {queries.shape[0]} queries; pass "
            "one label per query."
        )
    if bool(((y < 0) | (y >= num_classes)).any()):
        raise ValueError(
            f"zero_shot_classify: labels must be class indices in [0, {num_classes}), got "
            f"values in [{int(y.min())}, {int(y.max())}]."
        )
    confusion.index_put_((y, predictions), torch.ones_like(y), accumulate=True)
    accuracy = float((predictions == y).float().mean())
    chance = float(torch.bincount(y, minlength=num_classes).max()) / y.shape[0]
    return ZeroShotResult(predictions, scores, accuracy, chance, confusion)


__all__ = [
    "AUDIO_DIGIT_TEMPLATES",
    "DIGIT_NAMES",
    "IMAGE_DIGIT_TEMPLATES",
    "ZeroShotResult",
    "build_prompts",
    "class_embeddings",
    "model_text_embedder",
    "zero_shot_classify",
]
