"""A typed wrapper over the few FAISS calls the service makes.

faiss-cpu ships no type information (mypy ignores its imports, see pyproject.toml), so every
FAISS object stays inside this module and everything else sees typed methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

IdArray = NDArray[np.int64]
ScoreArray = NDArray[np.float32]


class FaissIndex:
    """Inner product over L2-normalised vectors (= cosine similarity), keyed by int64 ids.

    `exact` is a flat index (every vector compared: exact, fine up to ~100k vectors); otherwise
    HNSW (approximate, sub-linear). Reads may run in several threads at once; writes must not
    overlap reads (the caller holds a lock).
    """

    def __init__(self, raw: Any, kind: str) -> None:
        self._raw = raw
        self.kind = kind

    @classmethod
    def create(cls, dimensions: int, *, exact: bool, hnsw_m: int, ef_search: int) -> FaissIndex:
        inner: Any
        if exact:
            inner = faiss.IndexFlatIP(dimensions)
        else:
            inner = faiss.IndexHNSWFlat(dimensions, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = ef_search
        return cls(faiss.IndexIDMap2(inner), "flat" if exact else "hnsw")

    @classmethod
    def read(cls, path: Path, kind: str) -> FaissIndex:
        return cls(faiss.read_index(str(path)), kind)

    def write(self, path: Path) -> None:
        faiss.write_index(self._raw, str(path))

    @property
    def size(self) -> int:
        return int(self._raw.ntotal)

    @property
    def dimensions(self) -> int:
        return int(self._raw.d)

    def add(self, ids: IdArray, vectors: NDArray[np.float32]) -> None:
        if len(ids):
            self._raw.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def search(self, query: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """The `k` nearest ids with their similarity, best first."""
        if self.size == 0:
            return []
        scores, ids = self._raw.search(np.ascontiguousarray(query, dtype=np.float32), k)
        found: IdArray = ids[0]
        similarity: ScoreArray = scores[0]
        return [(int(i), float(s)) for i, s in zip(found, similarity, strict=True) if i >= 0]

    def similarity(self, query: NDArray[np.float32], ids: IdArray) -> ScoreArray:
        """The similarity of `query` to the stored vector of each of `ids`, in their order
        (every id must be in the index)."""
        if not len(ids):
            return np.empty(0, dtype=np.float32)
        stored: NDArray[np.float32] = self._raw.reconstruct_batch(ids)
        scores: ScoreArray = stored @ query[0]
        return scores


def set_threads(count: int) -> None:
    """FAISS's OpenMP threads per search; searches already run concurrently in threads."""
    faiss.omp_set_num_threads(count)
