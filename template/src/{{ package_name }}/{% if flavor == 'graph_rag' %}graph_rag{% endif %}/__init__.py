"""Hybrid graph + vector search over ingested documents.

request -> router -> service -> stores: `ingest/` is a package of router.py (HTTP only),
schemas.py, service.py (`Ingestor`: the rules, no HTTP) and repository.py (the document
rows); `search.py` holds the search endpoint and its service (`SearchEngine`). Both services
are built once in the lifespan. The stores: `graph.py` (entities and relations) and
`vectors.py` (the FAISS index over the embeddings the worker writes to the database, which
stays the source of truth).
"""
