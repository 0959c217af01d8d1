"""monitoring: series, raw samples (kept 24 h) and 1-minute rollups (kept 30 days)

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-29 01:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'series',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('workspace', sa.String(length=63), nullable=False),
        sa.Column('object', sa.String(length=63), nullable=False),
        sa.Column('instance', sa.String(length=32), nullable=False),
        sa.Column('metric', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'workspace', 'object', 'instance', 'metric', name='uq_series_key'),
    )
    op.create_table(
        'samples',
        sa.Column('series_id', sa.Integer(), nullable=False),
        sa.Column('t', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('series_id', 't'),
        sqlite_with_rowid=False,
    )
    op.create_table(
        'samples_1m',
        sa.Column('series_id', sa.Integer(), nullable=False),
        sa.Column('t', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('avg', sa.Float(), nullable=False),
        sa.Column('max', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('series_id', 't'),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table('samples_1m')
    op.drop_table('samples')
    op.drop_table('series')
