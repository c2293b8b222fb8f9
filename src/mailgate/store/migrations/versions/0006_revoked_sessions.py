"""admin sessions ended by logout, kept in the database (revoked_sessions)

Revocations were remembered in the memory of the process that logged out: a logged-out cookie was accepted
again after a restart and by every other process (issue 20).  A row per ended session, deleted once the
session would have expired anyway.

Revision ID: 0006_revoked_sessions
Revises: 0005_outbox_bodies
"""

import sqlalchemy as sa
from alembic import op

from mailgate.store.models import UtcDateTime

revision = "0006_revoked_sessions"
down_revision = "0005_outbox_bodies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revoked_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index(op.f("ix_revoked_sessions_expires_at"), "revoked_sessions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_revoked_sessions_expires_at"), table_name="revoked_sessions")
    op.drop_table("revoked_sessions")
