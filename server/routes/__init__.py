"""HTTP routes of the command center added with issue 15, one module per resource (STYLE
Part E: server/api/routes; `server/api.py` and `server/command_api.py` still hold the rest)."""
