"""accounts: several sending mailboxes; the OAuth and Email server settings keyed by account name

The single OAuth configuration and Email server (rows with id 1) become the account ``default``, unchanged.
A new table ``accounts`` lists the accounts with the extra senders each may use (aliases, ``*@domain``), and
each pending authorization remembers which account it is for (one redirect URI serves every account).

Revision ID: 0007_accounts
Revises: 0006_revoked_sessions
"""

import sqlalchemy as sa
from alembic import op

from mailgate.store.models import UtcDateTime

revision = "0007_accounts"
down_revision = "0006_revoked_sessions"
branch_labels = None
depends_on = None

_KEYED = ("oauth_config", "email_server")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("senders", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute("INSERT INTO accounts (name, senders, created_at) VALUES ('default', '[]', CURRENT_TIMESTAMP)")
    for table in _KEYED:
        # Every existing row (the old code wrote only id 1) becomes the account "default".
        op.add_column(table, sa.Column("account_id", sa.String(length=64), nullable=False, server_default="default"))
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.drop_column("id")
            batch.alter_column("account_id", server_default=None)
            batch.create_primary_key(f"pk_{table}", ["account_id"])
    op.add_column(
        "oauth_states", sa.Column("account_id", sa.String(length=64), nullable=False, server_default="default")
    )
    with op.batch_alter_table("oauth_states") as batch:
        batch.alter_column("account_id", server_default=None)


def downgrade() -> None:
    # Only the account "default" fits the old schema: the others' settings are dropped.
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_column("account_id")
    for table in _KEYED:
        op.execute(sa.table(table, sa.column("account_id")).delete().where(sa.column("account_id") != "default"))
        op.add_column(table, sa.Column("id", sa.Integer(), nullable=False, server_default="1"))
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.drop_column("account_id")
            batch.alter_column("id", server_default=None)
            batch.create_primary_key(f"pk_{table}", ["id"])
    op.drop_table("accounts")
