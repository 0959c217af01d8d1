"""self-repair: a replica asked to be replaced (outlier among its peers, heading for OOM)

Revision ID: 0012
Revises: 0009
Create Date: 2026-11-29 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('replicas') as b:
        b.add_column(sa.Column('replace_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('replicas') as b:
        b.drop_column('replace_reason')
