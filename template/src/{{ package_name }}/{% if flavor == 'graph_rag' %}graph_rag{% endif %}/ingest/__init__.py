"""Ingest: `POST /documents` (one) and `POST /ingest/batch` (many, validated in one pass).

router.py (HTTP) -> service.py (`Ingestor`: validation, extraction, one transaction with the
embedding job) -> repository.py (the document rows); schemas.py holds what the API takes and
returns.
"""
