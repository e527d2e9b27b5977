"""Search: `GET /search`, hybrid graph + vector retrieval with a score breakdown per hit.

router.py (HTTP) -> service.py (`SearchEngine`: the ranking) -> the stores (`vectors.py`,
`graph.py`) and repository.py (the documents' titles and snippets); schemas.py holds the
answer.
"""
