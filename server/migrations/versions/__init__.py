"""Alembic revision scripts (loaded by Alembic by file name, not imported as modules)."""
