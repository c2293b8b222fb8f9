"""grant lifecycle: what mailgate needs to see a grant's end coming (issue 23)

On ``oauth_accounts``: when the refresh token was issued, when the provider says it dies (Google Testing
grants), when an access token was last used for a send, and since when the status is what it is.  On
``oauth_config``: the client secret's expiry date the administrator entered.  All nullable: rows made by
earlier versions keep working (unknown dates are simply not watched).

Revision ID: 0009_lifecycle
Revises: 0008_relay_users
"""

import sqlalchemy as sa
from alembic import op

from mailgate.store.models import UtcDateTime

revision = "0009_lifecycle"
down_revision = "0008_relay_users"
branch_labels = None
depends_on = None

_ACCOUNT_COLUMNS = ("refresh_token_issued_at", "refresh_token_expires_at", "last_used_at", "status_since")


def upgrade() -> None:
    with op.batch_alter_table("oauth_accounts") as batch:
        for name in _ACCOUNT_COLUMNS:
            batch.add_column(sa.Column(name, UtcDateTime(), nullable=True))
    with op.batch_alter_table("oauth_config") as batch:
        batch.add_column(sa.Column("client_secret_expires_on", sa.Date(), nullable=True))
    # What is known of the tokens stored before: issued at the consent that stored them.
    op.execute("UPDATE oauth_accounts SET refresh_token_issued_at = authorized_at, status_since = updated_at")


def downgrade() -> None:
    with op.batch_alter_table("oauth_config") as batch:
        batch.drop_column("client_secret_expires_on")
    with op.batch_alter_table("oauth_accounts") as batch:
        for name in reversed(_ACCOUNT_COLUMNS):
            batch.drop_column(name)
