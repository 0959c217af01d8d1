"""workspaces (objects, names unique per workspace), API tokens, secrets, audit actors

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
        sa.Column('quota', sa.JSON(), nullable=True),
        sa.Column('spent_month', sa.String(length=7), nullable=False, server_default=''),
        sa.Column('spent', sa.Float(), nullable=False, server_default='0'),
        sa.Column('alerted', sa.Integer(), nullable=False, server_default='0'),
        sa.PrimaryKeyConstraint('name'),
    )
    op.bulk_insert(workspaces, [{"name": "default", "created_at": datetime.now(UTC).replace(tzinfo=None),
                                 "spent_month": "", "spent": 0.0, "alerted": 0}])
    op.create_table(
        'tokens',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('workspace', sa.String(length=63), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('deployment', sa.String(length=63), nullable=True),
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


    pg = op.get_bind().dialect.name == "postgresql"
    # the old global unique(name) constraints were created unnamed: PostgreSQL named them
    # <table>_name_key; on SQLite the naming convention gives batch mode a name to drop
    convention = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
    for table in ("jobs", "deployments"):
        with op.batch_alter_table(table, naming_convention=convention) as b:
            b.add_column(sa.Column('workspace', sa.String(length=63), nullable=False, server_default='default'))
            b.drop_constraint(f"{table}_name_key" if pg else f"uq_{table}_name", type_="unique")
            b.create_unique_constraint(f"uq_{table}_workspace_name", ["workspace", "name"])
    with op.batch_alter_table('events') as b:
        b.add_column(sa.Column('workspace', sa.String(length=63), nullable=False, server_default='default'))
        b.add_column(sa.Column('actor', sa.String(length=63), nullable=True))
        b.create_index('ix_events_workspace', ['workspace', 'id'])
        # workspaces are event objects too, with names of up to 63 characters
        b.alter_column('object_id', type_=sa.String(length=64), existing_type=sa.String(length=32),
                       existing_nullable=False)
    with op.batch_alter_table('pools') as b:
        b.add_column(sa.Column('workspace', sa.String(length=63), nullable=False, server_default='default'))


def downgrade() -> None:
    with op.batch_alter_table('pools') as b:
        b.drop_column('workspace')
    with op.batch_alter_table('events') as b:
        b.alter_column('object_id', type_=sa.String(length=32), existing_type=sa.String(length=64),
                       existing_nullable=False)
        b.drop_index('ix_events_workspace')
        b.drop_column('actor')
        b.drop_column('workspace')
    for table in ("jobs", "deployments"):
        with op.batch_alter_table(table) as b:
            b.drop_constraint(f"uq_{table}_workspace_name", type_="unique")
            b.drop_column('workspace')
            b.create_unique_constraint(f"{table}_name_key", ["name"])
    op.drop_table('secrets')
    op.drop_index('ix_tokens_workspace', table_name='tokens')
    op.drop_table('tokens')
    op.drop_table('workspaces')
