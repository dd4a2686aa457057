"""Prometheus metrics of the server, shared by the REST API and the MQTT consumer.

They live in the process-wide default registry; `GET /metrics` renders it with `render()`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.schemas import ServerMember

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


class MembersCollector(Collector):
    """The server processes of the group as this process last read them (issue 18): how many
    in each state, and per member its heartbeat age and the events it took and stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: list[ServerMember] = []

    def update(self, members: list[ServerMember]) -> None:
        with self._lock:
            self._members = list(members)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            members = list(self._members)
        states = GaugeMetricFamily(
            "zhizhi_server_members",
            "Server processes by state (live, late: no heartbeat for two periods, stopped, "
            "left, removed)",
            labels=["state"],
        )
        tally = dict.fromkeys(("live", "late", "stopped", "left", "removed"), 0)
        for member in members:
            tally["late" if member.late else member.state] += 1
        for state, count in tally.items():
            states.add_metric([state], count)
        yield states
        current = [m for m in members if m.state in ("live", "stopped")]
        labels = ["client_id", "host", "state"]
        age = GaugeMetricFamily(
            "zhizhi_server_member_heartbeat_age_seconds",
            "Seconds since each member's last heartbeat (live and stopped members)",
            labels=labels,
        )
        taken = GaugeMetricFamily(
            "zhizhi_server_member_events_taken",
            "Events each member took from the shared subscription since it started",
            labels=labels,
        )
        stored = GaugeMetricFamily(
            "zhizhi_server_member_events_stored",
            "Events each member stored since it started",
            labels=labels,
        )
        for member in current:
            values = [member.client_id, member.host, "late" if member.late else member.state]
            age.add_metric(values, member.heartbeat_age_s)
            taken.add_metric(values, member.events_taken)
            stored.add_metric(values, member.events_stored)
        yield age
        yield taken
        yield stored


MEMBERS = MembersCollector()
REGISTRY.register(MEMBERS)
MEMBERS_REMOVED = Counter(
    "zhizhi_server_members_removed_total",
    "Members gone longer than the grace whose broker session this process ended",
)
EDGE_LATE_ACKS = Gauge(
    "zhizhi_edge_late_acks",
    "Event messages an edge re-sent because the server's ack did not come within its re-send "
    "window (from the edge's status): a group member losing its turns shows here first",
    ["site_id", "edge_id"],
)
