"""Documents: `GET /documents` (the caller's, newest first, a page at a time, by tag) and
`GET /documents/{id}`. Storing them is ingest's job (`ingest/`).

router.py (HTTP) -> service.py (paging) -> repository.py (the rows); schemas.py holds what
the API shows.
"""
