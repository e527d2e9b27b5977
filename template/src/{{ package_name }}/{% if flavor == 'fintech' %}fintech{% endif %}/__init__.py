"""The fintech domain: portfolios, trades, reports, tokens, market and reference data.

A feature with rules and storage of its own is a package: `router.py` (HTTP only),
`schemas.py`, `service.py` (the rules, no HTTP) and `repository.py` (its SQL): `trades/`,
`reports/`, `tokens/`. A read-only view over others' data is one module with its router and
its service side by side: `portfolio.py`, `market.py`, `static_data.py`. `models.py` holds the
tables, `valuation.py` what a portfolio is worth. `components.py` builds the `FLAVOR` the
service's components.py plugs in.
"""
