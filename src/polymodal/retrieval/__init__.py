"""Embedding retrieval: indexes (exact or FAISS), search, metrics and zero-shot labels.

``ExactIndex`` needs only torch; ``FaissIndex`` needs the optional ``faiss`` package
(``pip install "polymodal[retrieval]"``), imported only when one is built or loaded.
The joint spaces searched here, their training and their embeddings live in
:mod:`polymodal.joint`; nothing here imports training.
"""

from polymodal.retrieval.index import (
    FORMAT_VERSION,
    ExactIndex,
    FaissIndex,
    Index,
    SearchResult,
    load_index,
)
from polymodal.retrieval.metrics import rank_metrics, relevance_matrix, retrieval_metrics
from polymodal.retrieval.zeroshot import (
    ZeroShotResult,
    build_prompts,
    class_embeddings,
    model_text_embedder,
    zero_shot_classify,
)

__all__ = [
    "FORMAT_VERSION",
    "ExactIndex",
    "FaissIndex",
    "Index",
    "SearchResult",
    "ZeroShotResult",
    "build_prompts",
    "class_embeddings",
    "load_index",
    "model_text_embedder",
    "rank_metrics",
    "relevance_matrix",
    "retrieval_metrics",
    "zero_shot_classify",
]
