"""Business decisions of the server, no HTTP and no MQTT (STYLE Part E: server/services)."""
