"""Hybrid graph + vector search over ingested documents.

request -> router (`ingest.py`, `search.py`) -> service (`Ingestor`, `SearchEngine`, built once
in the lifespan) -> stores (`graph.py`: entities and relations; `vectors.py`: the FAISS index
over the embeddings the worker writes to the database, which stays the source of truth).
"""
