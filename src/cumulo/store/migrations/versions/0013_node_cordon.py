"""a node can be cordoned (no new work lands on it) by a person or by self-repair

Revision ID: 0013
Revises: 0007
Create Date: 2026-11-29 02:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes') as b:
        b.add_column(sa.Column('cordoned', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes') as b:
        b.drop_column('cordoned')
