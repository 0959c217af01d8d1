"""State in SQL: SQLAlchemy models, Alembic migrations, repositories and row leases."""
