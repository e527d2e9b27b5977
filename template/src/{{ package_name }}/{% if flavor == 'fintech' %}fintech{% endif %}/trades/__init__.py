"""Trades: `POST /api/users/{user_id}/trades` books a buy or a sell in one transaction.

router.py (HTTP) -> service.py (the rules, idempotency) -> repository.py (rows and locks);
schemas.py holds what the API takes and returns.
"""
