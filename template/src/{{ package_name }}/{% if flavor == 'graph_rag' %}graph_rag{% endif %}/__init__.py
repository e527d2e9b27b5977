"""Hybrid graph + vector search over ingested documents.

request -> router -> service -> stores. Each feature is a package of router.py (HTTP only),
schemas.py, service.py (the rules, no HTTP) and repository.py (its SQL): `ingest/`
(`Ingestor`) and `search/` (`SearchEngine`), both services built once in the lifespan. The
stores they share: `graph.py` (entities and relations) and `vectors.py` (the FAISS index over
the embeddings the worker writes to the database, which stays the source of truth).
"""
