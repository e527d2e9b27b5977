"""The fintech domain: portfolios, trades, reports, market and reference data.

Each module holds one feature's router and service side by side; `models.py` holds the
tables, `valuation.py` what a portfolio is worth. `components.py` builds the `FLAVOR` the
service's components.py plugs in.
"""
