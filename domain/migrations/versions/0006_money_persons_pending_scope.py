"""paid amount, persons and token generations, one pending export per scope

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 11:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

PENDING = "status IN ('PENDING_L1', 'PENDING_L2')"


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paid_minor', sa.Integer(), server_default='0', nullable=False))
    # What was paid, for orders paid before it was recorded: the total, once a payment exists
    # (the rule refunds were capped by until now).
    op.execute(
        "UPDATE orders SET paid_minor = total_minor "
        "WHERE status <> 'PENDING_PAYMENT' AND payment_transaction_id IS NOT NULL"
    )
    op.execute("UPDATE orders SET paid_minor = refunded_minor WHERE paid_minor < refunded_minor")
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_check_constraint('refunded_within_paid', 'refunded_minor <= paid_minor')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('employee_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('token_generation', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_users_employee_id'), ['employee_id'], unique=False)

    # Older duplicates (the race this index closes) keep the newest pending one.
    op.execute(
        "UPDATE export_requests SET status = 'EXPIRED' WHERE " + PENDING + " AND id NOT IN ("
        "SELECT max(id) FROM export_requests WHERE " + PENDING +
        " GROUP BY requested_by_id, scope_digest)"
    )
    with op.batch_alter_table('export_requests', schema=None) as batch_op:
        batch_op.create_index(
            'uq_export_requests_pending_scope', ['requested_by_id', 'scope_digest'], unique=True,
            sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING),
        )


def downgrade() -> None:
    with op.batch_alter_table('export_requests', schema=None) as batch_op:
        batch_op.drop_index('uq_export_requests_pending_scope')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_employee_id'))
        batch_op.drop_column('token_generation')
        batch_op.drop_column('employee_id')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('refunded_within_paid', type_='check')
        batch_op.drop_column('paid_minor')
