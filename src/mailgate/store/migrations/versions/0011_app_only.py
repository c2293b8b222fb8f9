"""app-only identities: the OAuth grant of an account and its app-only credentials (issue 24)

``oauth_config`` gains the grant (``authorization_code`` for every existing row: the guide's flow, unchanged),
the mailbox an app-only identity sends as, the certificate of Microsoft client credentials with its private
key (encrypted), and a Google service account's JSON key (encrypted).

Revision ID: 0011_app_only
Revises: 0008_relay_users
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_app_only"
down_revision = "0010_alerts_audit"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("grant_type", sa.String(length=32), "authorization_code"),
    ("mailbox", sa.String(length=320), ""),
    ("certificate_pem", sa.Text(), ""),
    ("private_key_enc", sa.Text(), ""),
    ("service_account_key_enc", sa.Text(), ""),
)


def upgrade() -> None:
    for name, type_, default in _COLUMNS:
        # The server default fills the existing rows; it stays (the model writes every column anyway).
        op.add_column("oauth_config", sa.Column(name, type_, nullable=False, server_default=default))


def downgrade() -> None:
    with op.batch_alter_table("oauth_config") as batch:
        for name, _, _ in reversed(_COLUMNS):
            batch.drop_column(name)
