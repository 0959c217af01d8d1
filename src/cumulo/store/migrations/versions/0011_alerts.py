"""alert rules and alerts

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 01:45:00
"""

import sqlalchemy as sa
from alembic import op

import cumulo.store.models

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_rules',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('workspace', sa.String(length=63), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('created_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('updated_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('workspace', 'name', name='uq_alert_rules_workspace_name'),
    )
    op.create_table(
        'alerts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('workspace', sa.String(length=63), nullable=False),
        sa.Column('fingerprint', sa.String(length=16), nullable=False),
        sa.Column('rule', sa.String(length=63), nullable=False),
        sa.Column('target', sa.String(length=16), nullable=False),
        sa.Column('object', sa.String(length=63), nullable=False),
        sa.Column('instance', sa.String(length=63), nullable=False),
        sa.Column('severity', sa.String(length=16), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('evidence', sa.JSON(), nullable=False),
        sa.Column('started_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('fired_at', cumulo.store.models.UTCDateTime(), nullable=True),
        sa.Column('resolved_at', cumulo.store.models.UTCDateTime(), nullable=True),
        sa.Column('updated_at', cumulo.store.models.UTCDateTime(), nullable=False),
        sa.Column('delivered', sa.JSON(), nullable=False),
        sa.Column('notify_attempts', sa.Integer(), nullable=False),
        sa.Column('notify_next_at', cumulo.store.models.UTCDateTime(), nullable=True),
        sa.Column('notify_error', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_alerts_fingerprint_state', 'alerts', ['fingerprint', 'state'])
    op.create_index('ix_alerts_workspace_id', 'alerts', ['workspace', 'id'])
    op.create_index('ix_alerts_state', 'alerts', ['state'])
    op.create_index('ix_alerts_notify_next_at', 'alerts', ['notify_next_at'])


def downgrade() -> None:
    op.drop_table('alerts')
    op.drop_table('alert_rules')
