"""Prometheus metrics of the server, shared by the REST API and the MQTT consumer.

They live in the process-wide default registry; `GET /metrics` renders it with `render()`.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

EVENTS_INGESTED = Counter(
    "zhizhi_events_ingested_total",
    "Event messages handled by the ingest service, by source and result",
    ["source", "result"],  # source: mqtt|http; result: stored|duplicate
)
MESSAGES_REJECTED = Counter(
    "zhizhi_messages_rejected_total",
    "Messages dropped before ingestion, by reason (invalid_event, oversized, site_mismatch, ...)",
    ["reason"],
)
INGEST_LATENCY = Histogram(
    "zhizhi_ingest_latency_seconds",
    "Seconds to store one batch of events in the database (one transaction)",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENT_AGE = Histogram(
    "zhizhi_event_age_seconds",
    "Seconds from an event's observed_at on the edge to its storage on the server",
    ["source"],
    buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 3600.0),
)
EDGES_ONLINE = Gauge("zhizhi_edges_online", "Edges whose last status message said online")

CONTENT_TYPE = CONTENT_TYPE_LATEST


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The Prometheus text exposition of `registry`."""
    return generate_latest(registry)
