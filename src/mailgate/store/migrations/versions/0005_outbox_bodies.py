"""outbox: message bodies in a table of their own (outbox_bodies), apart from the rows that change

A message's row changes at every claim and every result; its body never does.  SQLite writes a changed row
whole: with the body in it (up to the size limit, 25 MB by default), each claim and each result copied the
body into the write-ahead log while holding the database's write lock (the API's inserts waiting), and a
claim read every claimed body into memory at once.  Bodies are moved, unchanged, with their message's id.

Revision ID: 0005_outbox_bodies
Revises: 0004_outbox_lighter_indexes
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_outbox_bodies"
down_revision = "0004_outbox_lighter_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_bodies",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["id"], ["outbox_messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO outbox_bodies (id, raw) SELECT id, raw FROM outbox_messages")
    # SQLite 3.35 and later drop a column in place (its indexes, partial ones too, are left as they are).
    op.drop_column("outbox_messages", "raw")


def downgrade() -> None:
    # The column comes back nullable (every message's is filled): SQLite cannot make it NOT NULL in place.
    op.add_column("outbox_messages", sa.Column("raw", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE outbox_messages SET raw = (SELECT raw FROM outbox_bodies WHERE outbox_bodies.id = outbox_messages.id)"
    )
    op.drop_table("outbox_bodies")
