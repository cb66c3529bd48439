"""sealed webhook secrets: the column holds a Fernet token, longer than the secret it seals

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 23:55:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The secrets themselves are sealed by `ordergate migrate` right after this (the key is a
    # setting, not something a migration may read).
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.alter_column(
            'secret', existing_type=sa.String(length=256), type_=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.alter_column(
            'secret', existing_type=sa.Text(), type_=sa.String(length=256), existing_nullable=False
        )
