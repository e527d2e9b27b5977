"""Baseline: the schema every later revision builds on, and the start of the template's branch.

The template's revisions carry the branch label `template`; yours go on `app` (see env.py).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("template",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates the `alembic_version` bookkeeping table only; features add their own revisions."""


def downgrade() -> None:
    """Nothing to undo."""
