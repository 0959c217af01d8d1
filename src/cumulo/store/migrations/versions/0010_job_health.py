"""job health: each attempt's progress record and told alert; a reported value may be NaN

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-29 01:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attempts') as b:
        b.add_column(sa.Column('progress', sa.JSON(), nullable=True))
        b.add_column(sa.Column('alerted', sa.String(length=16), nullable=True))
    with op.batch_alter_table('metrics') as b:
        b.alter_column('value', existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM metrics WHERE value IS NULL")
    with op.batch_alter_table('metrics') as b:
        b.alter_column('value', existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table('attempts') as b:
        b.drop_column('alerted')
        b.drop_column('progress')
