"""indexes for every documented order filter and sort (keyset pages at a million orders)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 14:30:00
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

INDEXES = {
    "ix_orders_channel_status_created_at_id": ["channel_code", "status", "created_at", "id"],
    "ix_orders_status_created_at_id": ["status", "created_at", "id"],
    "ix_orders_channel_created_at_id": ["channel_code", "created_at", "id"],
    "ix_orders_customer_created_at_id": ["customer_id", "created_at", "id"],
    "ix_orders_customer_phone": ["customer_phone"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "orders", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="orders")
