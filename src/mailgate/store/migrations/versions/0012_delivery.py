"""delivery: how an account hands its messages over, smtp (as before), graph or gmail_api (issue 24)

Existing accounts keep SMTP: the column defaults to ``smtp`` on the rows already there.

Revision ID: 0012_delivery
Revises: 0008_relay_users
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_delivery"
down_revision = "0011_app_only"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("email_server") as batch:
        batch.add_column(sa.Column("delivery", sa.String(length=16), nullable=False, server_default="smtp"))


def downgrade() -> None:
    with op.batch_alter_table("email_server") as batch:
        batch.drop_column("delivery")
