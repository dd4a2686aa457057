"""The central server: storage (`server.db`), ingestion (`server.ingest`), the REST API
(`server.api`, built by `create_app`), tokens (`server.auth`) and metrics (`server.metrics`).

Layers: routes in `server.api` → services (`server.ingest`, `server.evidence`) →
SQL in `server.repositories` → tables in `server.db.models`.
"""
