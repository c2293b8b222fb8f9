"""outbox messages

Revision ID: 0002_outbox
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from mailgate.store.models import UtcDateTime

revision = "0002_outbox"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("deadline_at", UtcDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_error_code", sa.String(length=64), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("smtp_reply", sa.Text(), nullable=False),
        sa.Column("recipient_results", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_outbox_claim", "outbox_messages", ["account_id", "status", "next_attempt_at"])
    op.create_index("ix_outbox_lease", "outbox_messages", ["status", "lease_expires_at"])
    op.create_index("ix_outbox_created", "outbox_messages", ["created_at"])
    op.create_index("ix_outbox_sent", "outbox_messages", ["account_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_sent", table_name="outbox_messages")
    op.drop_index("ix_outbox_created", table_name="outbox_messages")
    op.drop_index("ix_outbox_lease", table_name="outbox_messages")
    op.drop_index("ix_outbox_claim", table_name="outbox_messages")
    op.drop_table("outbox_messages")
