"""Answers: `POST /ask`, a question answered from the hybrid search's passages and graph facts.

router.py (HTTP: JSON or server-sent events) -> service.py (`Asker`: search, prompt within
the token budget, generator, degraded answers) -> the search engine, repository.py (the
documents' texts) and the generator (generate.py, chat_client.py); schemas.py holds the
request and the answer.
"""
