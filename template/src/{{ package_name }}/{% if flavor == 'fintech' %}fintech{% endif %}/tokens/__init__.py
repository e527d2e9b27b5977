"""Tokens: `/api/tokens`, where a user issues, lists and revokes their own API tokens.

router.py (HTTP) -> service.py (the rules: expiry cap, revocation) -> repository.py (the
token rows); schemas.py holds what the API takes and shows. Checking a token on each request
is `auth.py`'s job.
"""
