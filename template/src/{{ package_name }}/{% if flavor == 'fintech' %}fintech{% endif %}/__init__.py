"""The fintech domain: portfolios, trades, reports, market and reference data.

A feature is a module with its router and service side by side while it is small (portfolio,
reports, tokens), and a package once it has rules and storage of its own: `trades/` holds
`router.py` (HTTP only), `schemas.py`, `service.py` (the rules, no HTTP) and `repository.py`
(the SQL and its locks). `models.py` holds the tables, `valuation.py` what a portfolio is
worth. `components.py` builds the `FLAVOR` the service's components.py plugs in.
"""
