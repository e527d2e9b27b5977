"""The graph store: entities, their co-occurrence relations, and which documents mention them.

The walk that ranks documents for a query (every store computes the same numbers):
- each entity the query names starts with weight 1;
- each step carries every walked entity's weight to each entity related to it, divided by how
  many documents name that entity: a rare neighbour (a person named in three documents)
  passes on more than a common one (a city named in a hundred);
- a document gets the weight of every walked entity it names, divided again by how many
  documents name that entity.
The walk stops after `depth` steps and never enters an entity named by more than
`max_documents` documents. A document's `hops` is its distance from the nearest query entity
(0 when it names one), and its `onward` weight the part of its weight carried by the entities
the query does not name (what the walk found beyond the query's own words).

`SqlGraphStore` keeps them in the app database and walks relations with a recursive CTE (the
same SQL on SQLite and PostgreSQL). The Cypher stores, where generated (cypher.py: Memgraph,
FalkorDB), implement the same protocol; tests/test_graph_contract.py runs one contract
against each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import String, Table, TextClause, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database, insert_rows
from ..errors import ServiceUnavailableError
from .extract import Extraction
from .models import DocumentEntity, Entity, Relation

# Bound parameters per statement stay far below SQLite's and asyncpg's limits (32766).
CHUNK = 2000
# `max_documents=None`: no entity is too common (the largest 32-bit integer).
NO_CAP = 2**31 - 1
# Writes go through the Core tables: executemany on them skips the ORM's bulk-insert
# bookkeeping, a third of the time for the thousands of rows of a batch.
ENTITIES = cast(Table, Entity.__table__)
DOCUMENT_ENTITIES = cast(Table, DocumentEntity.__table__)
RELATIONS = cast(Table, Relation.__table__)


@dataclass(frozen=True, slots=True)
class Reached:
    """A document the graph walk reached."""

    hops: int
    weight: float
    # The part of `weight` from entities the query does not name (reached in 1 step or more).
    onward: float


@dataclass(frozen=True, slots=True)
class DocumentGraph:
    document_id: int
    extraction: Extraction


class GraphUnavailableError(ServiceUnavailableError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "the graph store is unavailable; retry later",
            retry_after=retry_after,
            code="graph_store_unavailable",
        )


class GraphStore(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None: ...

    async def add(self, session: AsyncSession, documents: Sequence[DocumentGraph]) -> None:
        """Store the documents' entities and relations. The SQL store writes through `session`
        (same transaction as the documents); other stores write on their own."""
        ...

    async def remove(self, session: AsyncSession, documents: Sequence[DocumentGraph]) -> None:
        """Take back what `add` stored for the documents (their extraction as it was stored):
        their mentions, their share of each relation's weight, and the entities no document
        names any more. The documents' rows stay (a document stored again with new content
        keeps its id). The SQL store writes through `session`, in the caller's transaction."""
        ...

    async def expand(
        self, keys: Sequence[str], depth: int, limit: int, max_documents: int | None = None
    ) -> dict[int, Reached]:
        """The walk from the entities named by `keys` (see the module docstring): the `limit`
        documents with the most weight, heaviest first (ties: nearest, then by id)."""
        ...


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def expand_sql(depth: int) -> str:
    """The walk (see the module docstring) as one query, a CTE per step: each step's weights
    are summed per entity before the next, so the query grows with the depth, not with the
    number of paths. Every step is an index lookup: entities by key or id, relations by their
    primary key (source_id first), document_entities by ix_document_entities_entity_id. CROSS
    JOIN makes SQLite (no statistics) drive the last join from the few walked entities instead
    of scanning document_entities; PostgreSQL plans it like an inner join."""
    steps = [
        "step0(entity_id, weight) AS (\n"
        "    SELECT id, 1.0 FROM entities\n"
        "    WHERE key IN :keys AND document_count BETWEEN 1 AND :max_documents\n"
        ")"
    ]
    for n in range(1, depth + 1):
        steps.append(
            f"step{n}(entity_id, weight) AS (\n"
            f"    SELECT r.target_id, SUM(s.weight / e.document_count)\n"
            f"    FROM step{n - 1} AS s\n"
            f"    JOIN relations AS r ON r.source_id = s.entity_id\n"
            f"    JOIN entities AS e ON e.id = r.target_id\n"
            f"    WHERE e.document_count BETWEEN 1 AND :max_documents\n"
            f"    GROUP BY r.target_id\n"
            f")"
        )
    walked = "\n    UNION ALL\n".join(
        f"    SELECT entity_id, {n} AS hops, weight FROM step{n}" for n in range(depth + 1)
    )
    return (
        "WITH\n"
        + ",\n".join(steps)
        + ",\nwalked(entity_id, hops, weight) AS (\n"
        + walked
        + "\n),\n"
        + """reached(entity_id, hops, weight) AS (
    SELECT entity_id, MIN(hops), SUM(weight) FROM walked GROUP BY entity_id
)
SELECT de.document_id, MIN(n.hops) AS hops, SUM(n.weight / e.document_count) AS weight,
    SUM(CASE WHEN n.hops > 0 THEN n.weight / e.document_count ELSE 0 END) AS onward
FROM reached AS n
CROSS JOIN document_entities AS de
JOIN entities AS e ON e.id = n.entity_id
WHERE de.entity_id = n.entity_id
GROUP BY de.document_id
ORDER BY weight DESC, hops, de.document_id
LIMIT :limit
"""
    )


class SqlGraphStore:
    name = "graph"

    def __init__(self, database: Database) -> None:
        self._database = database
        self._expand: dict[int, TextClause] = {}  # by depth

    async def open(self) -> None:
        """The tables live in the app database, opened before this store."""

    async def close(self) -> None:
        pass

    async def check(self) -> None:
        """The database's own check covers it."""

    async def add(self, session: AsyncSession, documents: Sequence[DocumentGraph]) -> None:
        entities = {
            key: entity
            for document in documents
            for key, entity in document.extraction.entities.items()
        }
        if not entities:
            return
        dialect = session.get_bind().dialect.name
        counts: dict[str, int] = {}
        for document in documents:
            for key in document.extraction.entities:
                counts[key] = counts.get(key, 0) + 1
        # Sorted by key, as the relations below by ids: two ingests naming the same entities
        # lock their rows in the same order, so they wait for each other, never deadlock.
        rows = [
            {"key": e.key, "name": e.name, "kind": e.kind, "document_count": counts[e.key]}
            for _, e in sorted(entities.items())
        ]
        # One upsert both counts the new mentions and returns every id (new or existing), so
        # no SELECT follows. Each key appears once, as ON CONFLICT DO UPDATE requires.
        ids: dict[str, int] = {}
        for upsert, parameters in insert_rows(dialect, ENTITIES, rows):
            counted = upsert.on_conflict_do_update(
                index_elements=[ENTITIES.c.key],
                set_={"document_count": ENTITIES.c.document_count + upsert.excluded.document_count},
            ).returning(ENTITIES.c.key, ENTITIES.c.id)
            result = await session.execute(counted, parameters)
            ids.update((key, entity_id) for key, entity_id in result)
        links = [
            {"document_id": document.document_id, "entity_id": ids[key]}
            for document in documents
            for key in document.extraction.entities
        ]
        for insert, parameters in insert_rows(dialect, DOCUMENT_ENTITIES, links):
            await session.execute(insert, parameters)
        weights: dict[tuple[int, int], int] = {}
        for document in documents:
            for (a, b), count in document.extraction.relations.items():
                for pair in ((ids[a], ids[b]), (ids[b], ids[a])):
                    weights[pair] = weights.get(pair, 0) + count
        if not weights:
            return
        relation_rows = [
            {"source_id": s, "target_id": t, "weight": w} for (s, t), w in sorted(weights.items())
        ]
        for upsert, parameters in insert_rows(dialect, RELATIONS, relation_rows):
            weighted = upsert.on_conflict_do_update(
                index_elements=[RELATIONS.c.source_id, RELATIONS.c.target_id],
                set_={"weight": RELATIONS.c.weight + upsert.excluded.weight},
            )
            await session.execute(weighted, parameters)

    async def remove(self, session: AsyncSession, documents: Sequence[DocumentGraph]) -> None:
        ids = [document.document_id for document in documents]
        named = select(DOCUMENT_ENTITIES.c.entity_id).where(
            DOCUMENT_ENTITIES.c.document_id.in_(ids)
        )
        involved = list((await session.scalars(named.distinct())).all())
        if not involved:
            return
        mentions = (
            select(func.count())
            .where(
                DOCUMENT_ENTITIES.c.entity_id == ENTITIES.c.id,
                DOCUMENT_ENTITIES.c.document_id.in_(ids),
            )
            .scalar_subquery()
        )
        await session.execute(
            update(ENTITIES)
            .where(ENTITIES.c.id.in_(involved))
            .values(document_count=ENTITIES.c.document_count - mentions)
        )
        keys = sorted({key for d in documents for pair in d.extraction.relations for key in pair})
        ids_by_key = dict(
            (
                await session.execute(
                    select(ENTITIES.c.key, ENTITIES.c.id).where(ENTITIES.c.key.in_(keys))
                )
            ).all()
        )
        weights: dict[tuple[int, int], int] = {}
        for document in documents:
            for (a, b), count in document.extraction.relations.items():
                if a in ids_by_key and b in ids_by_key:
                    for pair in ((ids_by_key[a], ids_by_key[b]), (ids_by_key[b], ids_by_key[a])):
                        weights[pair] = weights.get(pair, 0) + count
        rows = [{"s": s, "t": t, "w": w} for (s, t), w in sorted(weights.items())]
        for chunk in _chunks(rows):
            await session.execute(
                update(RELATIONS)
                .where(
                    RELATIONS.c.source_id == bindparam("s"),
                    RELATIONS.c.target_id == bindparam("t"),
                )
                .values(weight=RELATIONS.c.weight - bindparam("w")),
                list(chunk),
            )
        await session.execute(
            delete(RELATIONS).where(RELATIONS.c.source_id.in_(involved), RELATIONS.c.weight <= 0)
        )
        # The documents' mentions: a document stored again keeps its row.
        await session.execute(
            delete(DOCUMENT_ENTITIES).where(DOCUMENT_ENTITIES.c.document_id.in_(ids))
        )
        # Entities no other document names go, with their relations (ON DELETE CASCADE).
        await session.execute(
            delete(ENTITIES).where(ENTITIES.c.id.in_(involved), ENTITIES.c.document_count <= 0)
        )

    async def expand(
        self, keys: Sequence[str], depth: int, limit: int, max_documents: int | None = None
    ) -> dict[int, Reached]:
        if not keys:
            return {}
        statement = self._expand.get(depth)
        if statement is None:
            # Typed, so an empty list renders as an empty set of the right type on PostgreSQL.
            keys_parameter = bindparam("keys", expanding=True, type_=String)
            statement = self._expand[depth] = text(expand_sql(depth)).bindparams(keys_parameter)
        parameters = {
            "keys": list(keys),
            "limit": limit,
            "max_documents": NO_CAP if max_documents is None else max_documents,
        }
        async with self._database.sessions() as session:
            result = await session.execute(statement, parameters)
            return {
                int(document_id): Reached(int(hops), float(weight), float(onward))
                for document_id, hops, weight, onward in result.all()
            }
