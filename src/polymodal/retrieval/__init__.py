"""Embedding retrieval: indexes (exact or FAISS), search, and retrieval metrics.

``ExactIndex`` needs only torch; ``FaissIndex`` needs the optional ``faiss`` package
(``pip install "polymodal[retrieval]"``), imported only when one is built or loaded.
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

__all__ = [
    "FORMAT_VERSION",
    "ExactIndex",
    "FaissIndex",
    "Index",
    "SearchResult",
    "load_index",
    "rank_metrics",
    "relevance_matrix",
    "retrieval_metrics",
]
