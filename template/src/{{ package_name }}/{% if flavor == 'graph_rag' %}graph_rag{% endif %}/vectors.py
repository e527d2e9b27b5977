"""The vector store: a FAISS index over the `embeddings` table, kept current in every process.

- Start: reuse the index persisted under VECTOR_INDEX_DIR when its manifest still matches the
  database (same embedder, and the rows it covers are still there); otherwise build it from
  the stored embeddings. Either runs in a background task: until it is done the index is not
  ready and searches answer from the graph (see search.py), so a large rebuild never delays
  start-up or readiness.
- Refresh: every VECTOR_REFRESH_INTERVAL seconds one cheap query (a count) tells whether the
  worker stored new embeddings; only then are the new rows read and added. Every API process
  does this on its own, so each picks up new documents within that delay, with no restart.
  The count is also the watermark that cannot skip a row: embeddings are only ever inserted,
  so while the table holds more rows than the index, some are missing, however far below the
  highest id seen they were committed (see `refresh`).
- Keys: FAISS keys each vector by its embedding row, mapped here to its document. A document
  stored again with new content gets a new row (the embedding job replaces the old one), and
  from then on only the newest row of a document is answered: the old vector stays in FAISS,
  skipped, until the next rebuild.
- Shutdown: the index and its manifest are written atomically (temporary file + rename).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database
from ..resources import Degraded, FailureLog, stop_task
from ..settings import Settings
from .embed import Embedder, Vectors
from .faiss_index import FaissIndex, IdArray, set_threads
from .models import Embedding

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
# Rows read per query while building or refreshing.
BATCH_ROWS = 5000
# Embedding ids are handed out at insert but become visible at commit, so a row can appear
# below ids already seen. Each refresh looks back this many ids (the cheap, usual case); a
# row committed later than that is found by comparing the ids themselves.
LOOKBACK_IDS = 1000
# Ids per `IN (...)` query: well under every backend's limit on bound parameters.
IDS_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class Manifest:
    # What FAISS's ids are: "embedding" rows. (Indexes written before carried document ids;
    # their manifest lacks the field, fails to load and the index is rebuilt.)
    keys: str
    embedder: str
    dimensions: int
    kind: str
    count: int
    last_id: int


class IndexNotReadyError(Exception):
    pass


class VectorIndex:
    """A lifespan resource; `search` runs FAISS in a worker thread."""

    name = "vectors"

    def __init__(self, settings: Settings, database: Database, embedder: Embedder) -> None:
        self._settings = settings
        self._database = database
        self.embedder = embedder
        self.directory = settings.vector_index_dir
        self._index: FaissIndex | None = None
        # Embedding row id -> its document, for every vector in the index; document -> its
        # newest row (the only one searches answer). Written under `_write_lock`.
        self._document_of: dict[int, int] = {}
        self._newest: dict[int, int] = {}
        self._last_id = 0
        self._write_lock = threading.Lock()
        self._refresh_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.loaded_from_disk = False
        self.build_seconds: float | None = None
        self._refreshing = FailureLog(logger, "vector index refresh failed; serving the last index")

    async def open(self) -> None:
        set_threads(self._settings.vector_search_threads)
        self._task = asyncio.create_task(self._run(), name="vector-index")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._index is not None:
            try:
                await asyncio.to_thread(self._persist)
            except OSError as exc:
                # The next start rebuilds from the database: slower, never wrong.
                logger.warning("vector index not persisted: %s", exc)

    async def check(self) -> None:
        if not self.ready.is_set():
            raise Degraded("the vector index is loading; searches answer from the graph")
        self._refreshing.check()

    @property
    def size(self) -> int:
        return 0 if self._index is None else self._index.size

    @property
    def kind(self) -> str | None:
        return None if self._index is None else self._index.kind

    # --- search ---------------------------------------------------------------------------
    def search_sync(self, query: str, k: int) -> list[tuple[int, float]]:
        """Embed the query and search (blocking: runs in a worker thread): the `k` nearest
        documents with their similarity, best first."""
        return self.nearest_sync(self.embedder.embed([query]), k)

    def nearest_sync(self, vector: Vectors, k: int) -> list[tuple[int, float]]:
        """The `k` documents nearest an embedded query, with their similarity, best first
        (blocking)."""
        index = self._index
        if index is None or not self.ready.is_set():
            raise IndexNotReadyError
        with self._write_lock:
            # Vectors replaced by a newer one of their document are skipped: fetch enough
            # more that k current ones remain.
            replaced = len(self._document_of) - len(self._newest)
            found = index.search(vector, k + replaced)
            hits = []
            for row, similarity in found:
                document = self._document_of.get(row)
                if document is not None and self._newest[document] == row:
                    hits.append((document, similarity))
            return hits[:k]

    def similarity_sync(self, vector: Vectors, documents: Iterable[int]) -> dict[int, float]:
        """The similarity of an embedded query to each document's current vector (blocking);
        documents without one in the index (not embedded yet) are left out."""
        index = self._index
        if index is None or not self.ready.is_set():
            raise IndexNotReadyError
        with self._write_lock:
            known = [(d, row) for d in documents if (row := self._newest.get(d)) is not None]
            rows = np.fromiter((row for _, row in known), dtype=np.int64, count=len(known))
            scores = index.similarity(vector, rows)
        return {document: float(score) for (document, _), score in zip(known, scores, strict=True)}

    # --- start and refresh ----------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        building = FailureLog(logger, "vector index not built yet; retrying")
        while self._index is None:
            try:
                started = loop.time()
                await self._load_or_build()
                self.build_seconds = loop.time() - started
            except Exception as exc:  # the database is down or not migrated yet
                building.failed(exc)
                await asyncio.sleep(self._settings.vector_refresh_interval)
        building.succeeded()
        self.ready.set()
        if not self.loaded_from_disk:
            try:
                await asyncio.to_thread(self._persist)
            except OSError as exc:
                logger.warning("vector index not persisted: %s", exc)
        logger.info(
            "vector index ready",
            extra={"vectors": self.size, "kind": self.kind, "from_disk": self.loaded_from_disk},
        )
        while True:
            await asyncio.sleep(self._settings.vector_refresh_interval)
            try:
                await self.refresh()
            except Exception as exc:
                self._refreshing.failed(exc)
            else:
                self._refreshing.succeeded()

    async def _load_or_build(self) -> None:
        manifest = await asyncio.to_thread(self._read_manifest)
        if manifest is not None and await self._still_current(manifest):
            assert self.directory is not None
            index = await asyncio.to_thread(
                FaissIndex.read, self.directory / INDEX_FILE, manifest.kind
            )
            if index.size == manifest.count:
                self._index, self._last_id = index, manifest.last_id
                self.loaded_from_disk = True
                # The rows it covers and their documents (cheap: no vectors read).
                self._remember(await self._rows_up_to(manifest.last_id))
                await self.refresh()
                return
        await self._build()

    async def _build(self) -> None:
        async with self._database.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(Embedding)) or 0
        exact = count < self._settings.vector_exact_max
        index = FaissIndex.create(
            self.embedder.dimensions,
            exact=exact,
            hnsw_m=self._settings.vector_hnsw_m,
            ef_search=self._settings.vector_hnsw_ef_search,
        )
        self._index, self._last_id = index, 0
        self._document_of, self._newest = {}, {}
        while await self.refresh(rows=BATCH_ROWS * 4):
            pass

    async def refresh(self, rows: int = BATCH_ROWS) -> int:
        """Add embeddings stored since the last refresh; how many were added. One refresh at a
        time: two at once (the loop's and a caller's) read the same new rows and added each
        vector twice, and the persisted index then no longer matched the database."""
        async with self._refresh_lock:
            return await self._refresh(rows)

    async def _refresh(self, rows: int) -> int:
        index = self._index
        if index is None:
            return 0
        async with self._database.sessions() as session:
            stored, newest = (
                await session.execute(
                    select(func.count(), func.max(Embedding.id)).where(
                        Embedding.embedder == self.embedder.name
                    )
                )
            ).one()
            # Nothing above the last id read, and no more rows than the index holds: nothing
            # new. (Deleted documents take their rows along, so the count alone can stay level
            # while a new row arrives.)
            if not stored or (newest <= self._last_id and stored <= len(self._document_of)):
                return 0
            result = await session.execute(
                select(Embedding.id, Embedding.document_id, Embedding.vector)
                .where(
                    Embedding.id > max(self._last_id - LOOKBACK_IDS, 0),
                    Embedding.embedder == self.embedder.name,
                )
                .order_by(Embedding.id)
                .limit(rows + LOOKBACK_IDS)
            )
            page = result.all()
            fetched = [row for row in page if row.id not in self._document_of]
            if len(page) < rows + LOOKBACK_IDS and stored > len(self._document_of) + len(fetched):
                # Every recent row is read, yet some are still missing: committed below the
                # window by a transaction that stayed open while many others committed.
                fetched += await self._late_rows(session, {row.id for row in fetched}, rows)
        if not fetched:
            return 0
        ids = np.fromiter((row.id for row in fetched), dtype=np.int64)
        vectors: Vectors = np.frombuffer(
            b"".join(row.vector for row in fetched), dtype=np.float32
        ).reshape(len(fetched), self.embedder.dimensions)
        rows_of = [(row.id, row.document_id) for row in fetched]
        await asyncio.to_thread(self._add, index, ids, vectors, rows_of)
        return len(fetched)

    async def _late_rows(
        self, session: AsyncSession, fetched: set[int], rows: int
    ) -> list[Row[int, int, bytes]]:
        """Rows below the look-back window the index does not have yet (at most `rows`)."""
        stored = await session.scalars(
            select(Embedding.id).where(
                Embedding.id <= max(self._last_id - LOOKBACK_IDS, 0),
                Embedding.embedder == self.embedder.name,
            )
        )
        missing = sorted(set(stored.all()) - self._document_of.keys() - fetched)[:rows]
        late: list[Row[int, int, bytes]] = []
        for start in range(0, len(missing), IDS_PER_QUERY):
            result = await session.execute(
                select(Embedding.id, Embedding.document_id, Embedding.vector)
                .where(Embedding.id.in_(missing[start : start + IDS_PER_QUERY]))
                .order_by(Embedding.id)
            )
            late += result.all()
        if late:
            logger.info("late-committed embeddings added to the index", extra={"rows": len(late)})
        return late

    def _add(
        self, index: FaissIndex, ids: IdArray, vectors: Vectors, rows: list[tuple[int, int]]
    ) -> None:
        # The last id moves with the vectors, under the lock `_persist` takes: a refresh
        # cancelled by shutdown while this thread runs still leaves a manifest that describes
        # the index it is written with (else the next start finds them apart and rebuilds).
        with self._write_lock:
            index.add(ids, vectors)
            self._remember(rows)
            self._last_id = max(self._last_id, int(ids.max()))

    def _remember(self, rows: Iterable[tuple[int, int]]) -> None:
        """Map the index's (embedding row, document) pairs; a document's newest row wins."""
        for row, document in rows:
            self._document_of[row] = document
            if row > self._newest.get(document, 0):
                self._newest[document] = row

    async def _rows_up_to(self, last_id: int) -> list[tuple[int, int]]:
        async with self._database.sessions() as session:
            result = await session.execute(
                select(Embedding.id, Embedding.document_id).where(
                    Embedding.id <= last_id, Embedding.embedder == self.embedder.name
                )
            )
            return [(row.id, row.document_id) for row in result]

    async def _still_current(self, manifest: Manifest) -> bool:
        if (manifest.embedder, manifest.dimensions) != (
            self.embedder.name,
            self.embedder.dimensions,
        ):
            return False
        async with self._database.sessions() as session:
            covered = await session.scalar(
                select(func.count())
                .select_from(Embedding)
                .where(Embedding.id <= manifest.last_id, Embedding.embedder == manifest.embedder)
            )
        return covered == manifest.count

    # --- persistence ----------------------------------------------------------------------
    def _read_manifest(self) -> Manifest | None:
        if self.directory is None:
            return None
        try:
            data = json.loads((self.directory / MANIFEST_FILE).read_text(encoding="utf-8"))
            return Manifest(**data)
        except (OSError, ValueError, TypeError):
            return None

    def _persist(self) -> None:
        index, directory = self._index, self.directory
        if index is None or directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        with self._write_lock:
            manifest = Manifest(
                keys="embedding",
                embedder=self.embedder.name,
                dimensions=self.embedder.dimensions,
                kind=index.kind,
                count=index.size,
                last_id=self._last_id,
            )
            _replace(directory / INDEX_FILE, index.write)
        # The manifest goes last: a crash in between leaves an index it does not describe,
        # which the size check on the next start rejects.
        _replace(
            directory / MANIFEST_FILE,
            lambda path: path.write_text(json.dumps(asdict(manifest)), encoding="utf-8"),
        )


def _replace(target: Path, write: Callable[[Path], object]) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
