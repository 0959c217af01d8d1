"""clusters (Ray, Slurm) and where each node, attempt and replica is

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 22:00:00
"""

import sqlalchemy as sa
from alembic import op

import cumulo.store.models

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'clusters',
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('address', sa.Text(), nullable=True),
        sa.Column('partition', sa.String(length=63), nullable=True),
        sa.Column('artifacts', sa.Text(), nullable=False),
        sa.Column('created_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False, server_default='Unknown'),
        sa.Column('reason', sa.Text(), nullable=False, server_default=''),
        sa.Column('checked_at', cumulo.store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('name'),
    )
    with op.batch_alter_table('nodes') as b:
        b.add_column(sa.Column('cluster', sa.String(length=63), nullable=False, server_default='local'))
        b.add_column(sa.Column('engine_id', sa.String(length=128), nullable=True))
        b.add_column(sa.Column('address', sa.String(length=255), nullable=True))
        b.add_column(sa.Column('labels', sa.JSON(), nullable=True))
        b.create_index('ix_nodes_cluster', ['cluster'])
    with op.batch_alter_table('jobs') as b:
        b.add_column(sa.Column('cluster', sa.String(length=63), nullable=True))
    with op.batch_alter_table('attempts') as b:
        b.add_column(sa.Column('cluster', sa.String(length=63), nullable=False, server_default='local'))
    with op.batch_alter_table('replicas') as b:
        b.add_column(sa.Column('cluster', sa.String(length=63), nullable=False, server_default='local'))
        b.add_column(sa.Column('node', sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('replicas') as b:
        b.drop_column('node')
        b.drop_column('cluster')
    with op.batch_alter_table('attempts') as b:
        b.drop_column('cluster')
    with op.batch_alter_table('jobs') as b:
        b.drop_column('cluster')
    with op.batch_alter_table('nodes') as b:
        b.drop_index('ix_nodes_cluster')
        b.drop_column('labels')
        b.drop_column('address')
        b.drop_column('engine_id')
        b.drop_column('cluster')
    op.drop_table('clusters')
