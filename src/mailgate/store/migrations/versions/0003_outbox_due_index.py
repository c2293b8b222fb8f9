"""outbox: claim due messages through an index in their claiming order

``ix_outbox_claim`` (account, status, next attempt) could not give the rows of two statuses in order of next
attempt *and* creation, nor stop after the first n: SQLite read every message of the account, the sent
history included, and sorted them on each claim.  With ``created_at`` in the index, each status's due
messages come out in claiming order and the claim reads only the rows it takes.

Revision ID: 0003_outbox_due_index
Revises: 0002_outbox
"""

from alembic import op

revision = "0003_outbox_due_index"
down_revision = "0002_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_due", "outbox_messages", ["account_id", "status", "next_attempt_at", "created_at"])
    op.drop_index("ix_outbox_claim", table_name="outbox_messages")


def downgrade() -> None:
    op.create_index("ix_outbox_claim", "outbox_messages", ["account_id", "status", "next_attempt_at"])
    op.drop_index("ix_outbox_due", table_name="outbox_messages")
