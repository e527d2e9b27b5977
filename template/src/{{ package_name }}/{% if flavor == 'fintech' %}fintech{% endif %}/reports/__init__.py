"""Reports: `POST /api/reports` asks for portfolio analytics, a background job computes them.

router.py (HTTP) -> service.py (recording a report and its job, the job itself, the figures)
-> repository.py (the report, job and outbox rows); schemas.py holds the report and its
status as the API shows them.
"""
