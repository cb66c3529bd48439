"""intake: business day, escalation and intake digest on orders; picking lists

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26 19:50:00
"""
import sqlalchemy as sa
from alembic import op

import domain.db

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('business_day', sa.Date(), nullable=True))
        batch.add_column(
            sa.Column('escalated_at', domain.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column('intake_digest', sa.String(length=64), nullable=True))
    op.create_index(
        'ix_orders_channel_business_day', 'orders', ['channel_code', 'business_day']
    )
    op.create_table('picking_lists',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('warehouse', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', domain.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_picking_lists_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_picking_lists')),
    sa.UniqueConstraint('number', name=op.f('uq_picking_lists_number')),
    sa.UniqueConstraint('order_id', name=op.f('uq_picking_lists_order_id'))
    )
    op.create_index(
        'ix_picking_lists_warehouse_status_id', 'picking_lists', ['warehouse', 'status', 'id']
    )
    op.create_table('picking_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('picking_list_id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('product_name', sa.String(length=200), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['picking_list_id'], ['picking_lists.id'], name=op.f('fk_picking_lines_picking_list_id_picking_lists')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_picking_lines'))
    )
    op.create_index(
        op.f('ix_picking_lines_picking_list_id'), 'picking_lines', ['picking_list_id']
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_picking_lines_picking_list_id'), table_name='picking_lines')
    op.drop_table('picking_lines')
    op.drop_index('ix_picking_lists_warehouse_status_id', table_name='picking_lists')
    op.drop_table('picking_lists')
    op.drop_index('ix_orders_channel_business_day', table_name='orders')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('intake_digest')
        batch.drop_column('escalated_at')
        batch.drop_column('business_day')
