"""webhooks.starts_after_seq: a webhook receives the events committed after it was registered

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26 23:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'starts_after_seq',
                sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                server_default='0',
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('starts_after_seq')
