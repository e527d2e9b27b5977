"""The search tables. The SQL graph store traverses `relations` with recursive CTEs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base


class Document(Base):
    __tablename__ = "documents"
    # A client's own id is unique among its documents: storing it again returns the first.
    __table_args__ = (Index("uq_documents_owner_external_id", "owner", "external_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    # `metadata` is taken by SQLAlchemy's declarative base: the column keeps the name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Who stored it ("client:<id>", or "anonymous" while the API is open), and their id for it.
    owner: Mapped[str | None] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200))
    # Indexed terms, counted with repeats (lexical.py): BM25's document length. NULL until
    # the document is indexed.
    term_count: Mapped[int | None] = mapped_column(Integer)


class Entity(Base):
    __tablename__ = "entities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    # How many documents mention it (like a word's document frequency): the graph walk skips
    # entities named by more than SEARCH_ENTITY_MAX_DOCUMENTS documents.
    document_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DocumentEntity(Base):
    __tablename__ = "document_entities"
    # Covering (entity -> its documents) for the graph walk's last step.
    __table_args__ = (Index("ix_document_entities_entity_id", "entity_id", "document_id"),)

    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    entity_id: Mapped[int] = mapped_column(
        ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True
    )


class Term(Base):
    """A word stem of the lexical index (lexical.py)."""

    __tablename__ = "terms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    term: Mapped[str] = mapped_column(String(100), unique=True)


class DocumentTerm(Base):
    """How often a document uses a term (a title word counts twice), and the document's
    length (its term count), so that scoring a term's documents reads nothing else. The primary
    key reads a term's documents, carrying both numbers on PostgreSQL (an index-only scan);
    the second index, a document's terms (its deletion)."""

    __tablename__ = "document_terms"
    __table_args__ = (
        PrimaryKeyConstraint("term_id", "document_id", postgresql_include=["frequency", "length"]),
        Index("ix_document_terms_document_id", "document_id"),
        CheckConstraint("frequency > 0", name="frequency_positive"),
        CheckConstraint("length >= frequency", name="length_covers_frequency"),
    )

    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    frequency: Mapped[int] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)


class Relation(Base):
    """Co-occurrence of two entities, stored in both directions; `weight` counts sentences."""

    __tablename__ = "relations"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[int] = mapped_column(
        ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True
    )
    weight: Mapped[int] = mapped_column(Integer)


class Embedding(Base):
    """One vector per document, written by the embedding job; the FAISS index is rebuilt from
    these rows. `id` grows with each insert, which is what the index refresh polls; it is never
    reused (AUTOINCREMENT on SQLite), so a new row is never taken for a deleted one."""

    __tablename__ = "embeddings"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), unique=True
    )
    embedder: Mapped[str] = mapped_column(String(100))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
