"""Delivery: event sequencing, the durable outbox, MQTT and evidence upload."""
