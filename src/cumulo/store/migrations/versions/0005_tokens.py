"""workspaces, API tokens and secrets

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 19:30:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import cumulo.store.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    workspaces = op.create_table(
        'workspaces',
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('created_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.bulk_insert(workspaces, [{"name": "default", "created_at": datetime.now(UTC).replace(tzinfo=None)}])
    op.create_table(
        'tokens',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('workspace', sa.String(length=63), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('created_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('expires_at', cumulo.store.models.UTCDateTime(), nullable=True),
        sa.Column('revoked_at', cumulo.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['workspace'], ['workspaces.name'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('hash'),
    )
    op.create_index('ix_tokens_workspace', 'tokens', ['workspace'])
    op.create_table(
        'secrets',
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('workspace', sa.String(length=63), nullable=False),
        sa.Column('sealed', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('updated_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['workspace'], ['workspaces.name'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('name', 'workspace'),
    )


def downgrade() -> None:
    op.drop_table('secrets')
    op.drop_index('ix_tokens_workspace', table_name='tokens')
    op.drop_table('tokens')
    op.drop_table('workspaces')
