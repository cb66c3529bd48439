"""account changes: privileged account changes wait for a second administrator; who set a
password; signing keys awaiting confirmation

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08 02:00:00
"""
from alembic import op
import sqlalchemy as sa
import domain.db


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'account_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('roles', sa.Text(), nullable=True),
        sa.Column('password_hash', sa.String(length=255), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('requested_by_person', sa.String(length=80), nullable=False),
        sa.Column('requested_at', domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', domain.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_account_changes_decided_by_id_users')),
        sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_account_changes_requested_by_id_users')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_changes_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_account_changes'))
    )
    with op.batch_alter_table('account_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_changes_status_user'), ['status', 'user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_changes_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_account_changes_pending', ['user_id', 'kind'], unique=True, postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_set_by', sa.String(length=80), nullable=True))
        batch_op.add_column(
            sa.Column('password_set_at', domain.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'awaiting_confirmation', sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(sa.Column('confirmed_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column('confirmed_at', domain.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_signing_keys_confirmed_by_id_users'), 'users', ['confirmed_by_id'], ['id']
        )


def downgrade() -> None:
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_signing_keys_confirmed_by_id_users'), type_='foreignkey')
        batch_op.drop_column('confirmed_at')
        batch_op.drop_column('confirmed_by_id')
        batch_op.drop_column('awaiting_confirmation')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('password_set_at')
        batch_op.drop_column('password_set_by')
    with op.batch_alter_table('account_changes', schema=None) as batch_op:
        batch_op.drop_index('uq_account_changes_pending', postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
        batch_op.drop_index(batch_op.f('ix_account_changes_user_id'))
        batch_op.drop_index(batch_op.f('ix_account_changes_status_user'))
    op.drop_table('account_changes')
