"""canary rollouts: a deployment's rollout state

Revision ID: 0009
Revises: 0011
Create Date: 2026-11-29 01:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments') as b:
        b.add_column(sa.Column('rollout', sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deployments') as b:
        b.drop_column('rollout')
