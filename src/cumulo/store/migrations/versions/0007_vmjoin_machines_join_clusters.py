"""machines launched for a cluster join it: the cluster's join address, the engine's view of a
launched node, and how many machines a node has had (a join-timeout replacement launches another)

Revision ID: 0007_vmjoin
Revises: 0012
Create Date: 2026-11-29 01:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007_vmjoin'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clusters') as b:
        b.add_column(sa.Column('join_address', sa.Text(), nullable=True))
    with op.batch_alter_table('nodes') as b:
        b.add_column(sa.Column('engine_state', sa.String(length=16), nullable=True))
        b.add_column(sa.Column('replacements', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('nodes') as b:
        b.drop_column('replacements')
        b.drop_column('engine_state')
    with op.batch_alter_table('clusters') as b:
        b.drop_column('join_address')
