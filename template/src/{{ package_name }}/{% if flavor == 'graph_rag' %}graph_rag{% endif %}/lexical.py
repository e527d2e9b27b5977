"""The lexical signal: BM25 over each document's title and text, kept in two tables.

`terms` holds each word stem once; `document_terms` holds how often each document uses it
and the document's length, so scoring a term reads its postings and nothing else (on
PostgreSQL the primary key's index alone); `documents.term_count` is the length too, for the
corpus statistics. How many documents use a term is counted from its
postings when a query needs it (and kept a few seconds), not kept in a counter every ingest
would have to lock: concurrent ingests of common words never wait on each other.

The scores are the same on SQLite and PostgreSQL, which their own full-text searches are not
(PostgreSQL's `ts_rank` ignores how rare a word is; SQLite's FTS5 `bm25()` has no bound).
Here the score has one, so a hit's `lexical` means the same thing on both databases and for
every query:

    lexical = min(1, BM25(query, document) / sum of the query's IDFs)

about 1 for a document using each word of the query once at average length, and the share of
the query's information it holds otherwise. A word no document uses weighs most, so a query
about something the corpus lacks ("who invented the Zanmar engine") keeps a low score even on
documents sharing its common words: what a minimum score needs to say "no answer".
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import Stemmer
from sqlalchemy import Float, Integer, Select, Table, any_, bindparam, column, func, select, values
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database, insert_rows
from .extract import STOPWORDS
from .models import Document, DocumentTerm, Term

WORD = re.compile(r"\w+")
# Longer "words" are identifiers, hashes or noise: not indexed.
MAX_TERM_LENGTH = 40
# A word of the title counts as this many occurrences.
TITLE_WEIGHT = 2
# BM25's usual constants: k1, how fast repeats stop adding; b, how much length counts.
K1 = 1.2
B = 0.75
# At most this many distinct query terms are scored (a pasted paragraph is not a query).
MAX_QUERY_TERMS = 32
# Candidates come from the rarest query terms whose posting lists hold at most this many rows
# together (always the rarest one); the common terms' share is then added for those
# candidates only, by primary key. A query of common words stays as cheap as a rare one: at
# 100,000 documents (bench/bench_relevance.py's corpus, SQLite) 5,000 rows kept every nDCG@10
# of 20,000, and the signal's p50 and p95 fell to 0.4x and 0.6x, measured in one run.
POSTINGS_BUDGET = 5_000
# When some query words are left to that second step, candidates fetched per requested hit.
COMMON_REORDER = 4
# Seconds the corpus statistics (document count, average length) are reused; this process's
# own ingests refresh them at once, other processes' within this time.
STATS_TTL = 5.0
# Rows per statement, far below SQLite's and asyncpg's parameter limits.
CHUNK = 2000

TERMS = cast(Table, Term.__table__)
DOCUMENT_TERMS = cast(Table, DocumentTerm.__table__)
DOCUMENTS = cast(Table, Document.__table__)


class Analyzer:
    """Text -> the terms it is indexed and searched by: lower-case words, stop words dropped,
    stemmed (Snowball, English), so "invented" and "invents" meet. Thread-safe."""

    def __init__(self) -> None:
        # A PyStemmer stemmer is not safe to share between threads: one per thread.
        self._local = threading.local()

    def terms(self, text: str) -> list[str]:
        words = [
            word
            for word in WORD.findall(text.lower())
            if word not in STOPWORDS and len(word) <= MAX_TERM_LENGTH
        ]
        return cast(list[str], self._stemmer().stemWords(words))

    def document(self, title: str, text: str) -> Counter[str]:
        """A document's term frequencies, its title counting TITLE_WEIGHT times."""
        counts = Counter(self.terms(text))
        for term in self.terms(title):
            counts[term] += TITLE_WEIGHT
        return counts

    def _stemmer(self) -> Any:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            stemmer = self._local.stemmer = Stemmer.Stemmer("english")
        return stemmer


@dataclass(frozen=True, slots=True)
class DocumentTerms:
    document_id: int
    counts: Counter[str]


@dataclass(frozen=True, slots=True)
class _Stats:
    documents: int
    average_length: float
    read_at: float


class IndexWrites:
    """The statements that index `documents`: their new terms, then (with every term's id)
    their postings and lengths, each with its parameters. Run by ingest (async, in its
    transaction) and by the migration indexing earlier documents (sync)."""

    def __init__(self, dialect: str, documents: Sequence[DocumentTerms]) -> None:
        self.documents = documents
        self._dialect = dialect
        # Sorted: two ingests adding the same new terms wait for each other, never deadlock.
        self._terms = sorted({term for document in documents for term in document.counts})

    def new_terms(self) -> list[tuple[Any, Any]]:
        """The INSERTs of the terms not stored yet (an existing row is not touched, so not
        locked)."""
        if not self._terms:
            return []
        return [
            (insert.on_conflict_do_nothing(index_elements=[TERMS.c.term]), parameters)
            for insert, parameters in insert_rows(
                self._dialect, TERMS, [{"term": term} for term in self._terms]
            )
        ]

    def term_ids(self) -> list[Select[Any]]:
        """The SELECTs of every term's id."""
        ids = select(TERMS.c.term, TERMS.c.id)
        if self._dialect == "postgresql":
            # One array parameter, not one bound parameter per term.
            terms = bindparam("terms", self._terms, type_=postgresql.ARRAY(TERMS.c.term.type))
            return [ids.where(TERMS.c.term == any_(terms))]
        return [ids.where(TERMS.c.term.in_(chunk)) for chunk in _chunks(self._terms)]

    def rest(self, ids: dict[str, int]) -> list[tuple[Any, Any]]:
        """The postings and lengths, once `ids` maps every term to its id."""
        links = [
            {
                "term_id": ids[term],
                "document_id": document.document_id,
                "frequency": count,
                "length": document.counts.total(),
            }
            for document in self.documents
            for term, count in document.counts.items()
        ]
        writes: list[tuple[Any, Any]] = []
        if links:
            writes += insert_rows(self._dialect, DOCUMENT_TERMS, links)
        by_length: dict[int, list[int]] = {}
        for document in self.documents:
            by_length.setdefault(document.counts.total(), []).append(document.document_id)
        for length, document_ids in sorted(by_length.items()):
            for chunk in _chunks(document_ids):
                update = DOCUMENTS.update().where(DOCUMENTS.c.id.in_(chunk))
                writes.append((update.values(term_count=length), None))
        return writes


def index_sync(connection: Connection, documents: Sequence[DocumentTerms]) -> None:
    """Index `documents` through a synchronous connection (the migration does)."""
    if not documents:
        return
    writes = IndexWrites(connection.dialect.name, documents)
    ids: dict[str, int] = {}
    for statement, parameters in writes.new_terms():
        connection.execute(statement, parameters)
    for select_ids in writes.term_ids():
        ids.update((term, term_id) for term, term_id in connection.execute(select_ids))
    for statement, parameters in writes.rest(ids):
        connection.execute(statement, parameters)


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


class LexicalIndex:
    """Writes the postings of new documents (in the ingest's transaction) and scores queries."""

    name = "lexical"

    def __init__(
        self,
        database: Database,
        analyzer: Analyzer | None = None,
        postings_budget: int = POSTINGS_BUDGET,
    ) -> None:
        self._database = database
        self.analyzer = analyzer or Analyzer()
        self.postings_budget = postings_budget
        self._stats: _Stats | None = None
        # Term id -> documents using it, for as long as the statistics above.
        self._counts: dict[int, int] = {}
        self._stats_lock = asyncio.Lock()

    async def add(self, session: AsyncSession, documents: Sequence[DocumentTerms]) -> None:
        """Index the documents through `session`: committed with them, or not at all."""
        if not documents:
            return
        writes = IndexWrites(session.get_bind().dialect.name, documents)
        ids: dict[str, int] = {}
        for statement, parameters in writes.new_terms():
            await session.execute(statement, parameters)
        for select_ids in writes.term_ids():
            result = await session.execute(select_ids)
            ids.update((term, term_id) for term, term_id in result)
        for statement, parameters in writes.rest(ids):
            await session.execute(statement, parameters)
        self._forget_statistics()  # the next search counts them

    async def remove(self, session: AsyncSession, document_ids: Sequence[int]) -> None:
        """Unindex the documents (their rows stay: they are about to be indexed again)."""
        for chunk in _chunks(list(document_ids)):
            await session.execute(
                DOCUMENT_TERMS.delete().where(DOCUMENT_TERMS.c.document_id.in_(chunk))
            )
        self._forget_statistics()

    def removed(self) -> None:
        """Documents were deleted (their postings go with their rows): count without them."""
        self._forget_statistics()

    async def scores(self, query: str, limit: int) -> dict[int, float]:
        """The `limit` documents scoring highest for `query` -> their lexical score, 0 to 1."""
        terms = list(dict.fromkeys(self.analyzer.terms(query)))[:MAX_QUERY_TERMS]
        if not terms:
            return {}
        async with self._database.sessions() as session:
            stats = await self._corpus(session)
            if stats.documents == 0:
                return {}
            ids = {
                term: int(term_id)
                for term, term_id in await session.execute(
                    select(TERMS.c.term, TERMS.c.id).where(TERMS.c.term.in_(terms))
                )
            }
            counts = await self._document_counts(session, list(ids.values()))
            known = {term: (term_id, counts.get(term_id, 0)) for term, term_id in ids.items()}
            # Every query term weighs in the bound, the unknown ones most: they are the
            # information no document holds.
            full = sum(_idf(known.get(term, (0, 0))[1], stats.documents) for term in terms)
            if not known:
                return {}
            weights = {term_id: _idf(count, stats.documents) for term_id, count in known.values()}
            rare, common = _split_by_budget(list(known.values()), self.postings_budget)
            # The common words can still reorder the candidates: more of them than asked for.
            wanted = limit * COMMON_REORDER if common else limit
            found = await self._score(session, stats, {t: weights[t] for t in rare}, wanted)
            if common and found:
                extra = await self._score(
                    session, stats, {t: weights[t] for t in common}, None, list(found)
                )
                for document_id, score in extra.items():
                    found[document_id] += score
        ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return {document_id: min(1.0, score / full) for document_id, score in ranked}

    async def _score(
        self,
        session: AsyncSession,
        stats: _Stats,
        weights: dict[int, float],
        limit: int | None,
        among: list[int] | None = None,
    ) -> dict[int, float]:
        # A CTE: SQLite reads VALUES with named columns only in that form.
        query = (
            values(column("term_id", Integer), column("idf", Float), name="q")
            .data(list(weights.items()))
            .cte("q")
        )
        frequency = DOCUMENT_TERMS.c.frequency
        length = DOCUMENT_TERMS.c.length
        bm25 = func.sum(
            query.c.idf
            * frequency
            * (K1 + 1)
            / (frequency + K1 * (1 - B + B * length / stats.average_length))
        ).label("score")
        statement = (
            select(DOCUMENT_TERMS.c.document_id, bm25)
            .select_from(query)
            .join(DOCUMENT_TERMS, DOCUMENT_TERMS.c.term_id == query.c.term_id)
            .group_by(DOCUMENT_TERMS.c.document_id)
        )
        if among is not None:
            statement = statement.where(DOCUMENT_TERMS.c.document_id.in_(among))
        if limit is not None:
            statement = statement.order_by(bm25.desc(), DOCUMENT_TERMS.c.document_id).limit(limit)
        result = await session.execute(statement)
        return {int(document_id): float(score) for document_id, score in result.all()}

    async def _document_counts(self, session: AsyncSession, term_ids: list[int]) -> dict[int, int]:
        """Term id -> how many documents use it: counted from the postings (an index-only
        scan of the primary key), kept until the statistics are read again."""
        # Built here, not read back from the cache after the query: a write may clear the cache
        # while the query runs.
        counts = {term_id: self._counts[term_id] for term_id in term_ids if term_id in self._counts}
        missing = [term_id for term_id in term_ids if term_id not in counts]
        if missing:
            result = await session.execute(
                select(DOCUMENT_TERMS.c.term_id, func.count())
                .where(DOCUMENT_TERMS.c.term_id.in_(missing))
                .group_by(DOCUMENT_TERMS.c.term_id)
            )
            counted = {int(term_id): int(count) for term_id, count in result.all()}
            fresh = {term_id: counted.get(term_id, 0) for term_id in missing}
            self._counts.update(fresh)
            counts.update(fresh)
        return counts

    def _forget_statistics(self) -> None:
        self._stats = None
        self._counts.clear()

    async def _corpus(self, session: AsyncSession) -> _Stats:
        stats = self._stats
        if stats is not None and time.monotonic() - stats.read_at < STATS_TTL:
            return stats
        async with self._stats_lock:
            if self._stats is None or time.monotonic() - self._stats.read_at >= STATS_TTL:
                count, average = (
                    await session.execute(
                        select(func.count(DOCUMENTS.c.term_count), func.avg(DOCUMENTS.c.term_count))
                    )
                ).one()
                self._counts.clear()  # read afresh with them
                self._stats = _Stats(int(count), float(average or 1.0) or 1.0, time.monotonic())
            return self._stats


def _idf(document_count: int, documents: int) -> float:
    """BM25's inverse document frequency (the variant that is never negative)."""
    return math.log(1 + (documents - document_count + 0.5) / (document_count + 0.5))


def _split_by_budget(known: list[tuple[int, int]], budget: int) -> tuple[list[int], list[int]]:
    """Term ids whose posting lists are read whole (the rarest, within `budget` rows), and the
    rest."""
    rare: list[int] = []
    common: list[int] = []
    read = 0
    for term_id, count in sorted(known, key=lambda item: item[1]):
        if not rare or read + count <= budget:
            rare.append(term_id)
            read += count
        else:
            common.append(term_id)
    return rare, common
