"""orders: drop three single-column indexes that composite indexes already lead with

`ix_orders_channel_code`, `ix_orders_status` and `ix_orders_customer_id` are the first column
of `ix_orders_channel_created_at_id`, `ix_orders_status_created_at_id` and
`ix_orders_customer_created_at_id`, which serve every lookup they served. Each order written
maintained them for nothing (13 index entries per order, now 10).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-26 23:30:00
"""
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

COVERED = {
    'ix_orders_channel_code': 'channel_code',
    'ix_orders_status': 'status',
    'ix_orders_customer_id': 'customer_id',
}


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for name in COVERED:
            batch_op.drop_index(name)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for name, column in COVERED.items():
            batch_op.create_index(name, [column], unique=False)
