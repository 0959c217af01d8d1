"""node pools (kind: NodePool) and the node pool a node was launched by

Revision ID: 0007
Revises: 0007_vmjoin
Create Date: 2026-11-29 01:30:00
"""

import sqlalchemy as sa
from alembic import op

import cumulo.store.models

revision = '0007'
down_revision = '0007_vmjoin'  # chained after vmjoin's 0007 in the merge (the lead orders the parallel branches)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'node_pools',
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('cluster', sa.String(length=63), nullable=False),
        sa.Column('created_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('updated_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('deleting', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('state', sa.String(length=16), nullable=False, server_default='Ready'),
        sa.Column('reason', sa.Text(), nullable=False, server_default=''),
        sa.Column('next_seq', sa.Integer(), nullable=False, server_default='1'),
        sa.Column('idle_since', sa.JSON(), nullable=False, server_default='{}'),
        sa.Column('notes', sa.JSON(), nullable=False, server_default='{}'),
        sa.Column('lock_token', sa.String(length=32), nullable=True),
        sa.Column('lock_expires', cumulo.store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_index('ix_node_pools_cluster', 'node_pools', ['cluster'])
    with op.batch_alter_table('nodes') as b:
        b.add_column(sa.Column('node_pool', sa.String(length=63), nullable=True))
        b.create_index('ix_nodes_node_pool', ['node_pool'])


def downgrade() -> None:
    with op.batch_alter_table('nodes') as b:
        b.drop_index('ix_nodes_node_pool')
        b.drop_column('node_pool')
    op.drop_index('ix_node_pools_cluster', table_name='node_pools')
    op.drop_table('node_pools')
