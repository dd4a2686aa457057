"""Database layer of the server: SQLAlchemy tables, engines and Alembic migrations."""
