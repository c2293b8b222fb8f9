"""outbox: fewer index entries to write per message (no ix_outbox_lease; ix_outbox_sent of sent messages only)

Every enqueue, claim and result wrote ``ix_outbox_lease`` (status, lease expiry: an entry moved each time the
status changed), which no query needs: a claim finds expired leases through ``ix_outbox_due`` (account,
status ``sending``: the handful being sent), and the sending-rate window counts them the same way.
``ix_outbox_sent`` (account, sent time) held an entry for every message, sent or not, moved when it was sent;
the window only asks for sent ones (``sent_at >= ?``), so it now holds those alone: an enqueue does not write
it, a result adds one entry.  On SQLite each index entry written is a page more in the write-ahead log.

Revision ID: 0004_outbox_lighter_indexes
Revises: 0003_outbox_due_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_outbox_lighter_indexes"
down_revision = "0003_outbox_due_index"
branch_labels = None
depends_on = None

_SENT = sa.text("sent_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_outbox_lease", table_name="outbox_messages")
    op.drop_index("ix_outbox_sent", table_name="outbox_messages")
    op.create_index(
        "ix_outbox_sent", "outbox_messages", ["account_id", "sent_at"], sqlite_where=_SENT, postgresql_where=_SENT
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_sent", table_name="outbox_messages")
    op.create_index("ix_outbox_sent", "outbox_messages", ["account_id", "sent_at"])
    op.create_index("ix_outbox_lease", "outbox_messages", ["status", "lease_expires_at"])
