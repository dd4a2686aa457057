"""The central server (ingestion, incidents, dashboard): being built."""
