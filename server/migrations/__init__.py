"""Alembic migrations of the server schema; run them with `server.db.session.migrate`."""
