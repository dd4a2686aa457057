"""`zhizhi bench ingest`: events per second from MQTT into the database through one or more
`zhizhi server` processes, with their snapshots into the object store, and the latency from
publish to stored.

What it starts, all on 127.0.0.1, all gone at the end (nothing left on the machine's services):

- a private Mosquitto (never the machine's broker) in a temporary folder;
- for PostgreSQL, a temporary database on the server `--db` names (created, migrated, dropped
  WITH FORCE); SQLite: the file `--db` names (one server process only);
- with `--s3`, moto's standalone S3 server (a real S3 HTTP API, objects in memory); with
  `--s3-endpoint URL`, a bucket of the run's own on that store (MinIO, OSS, ...), emptied and
  removed at the end; otherwise the servers' local media folders;
- `--servers N` `zhizhi server` processes on that database, distinct client ids in one shared
  subscription group of the run's own, sessions that end with their connections (Session
  Expiry 0), evidence in that store.

A load process (of its own, so it does not share an interpreter with anything measured) plays
8 edges. For each event it uploads the event's snapshot (`--snapshot-kb` bytes, unique per
event) the way an edge's uploader does (`PUT /api/v1/evidence/{sha256}`, raw body, the site's
edge token; round robin over the servers, as a load balancer would) and publishes the event
(QoS 1) citing that file. An event counts as stored when its ack comes back (the server acks
only after the commit), so publish → ack is an upper bound of publish → stored; "with its
snapshot" waits for the upload's answer too (the file is then in the bucket).

- throughput: `events` events as fast as the servers take them, at most `window` events and
  `window` uploads outstanding (as an edge's outbox keeps a window);
- latency: `rate` events per second for `seconds`; p50 and p99 of publish → ack, and of
  publish → ack and snapshot stored.

Afterwards the database is counted (lost: sent but not stored; duplicates: rows beyond one per
(event_id, seq)) and the bucket listed (snapshots there).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import multiprocessing
import os
import platform
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common.events import AckMessage, Event, events_topic
from common.mqtt_url import MqttUrl, parse_mqtt_url
from zhizhi.local_services import ServerProcess, ServiceFailed

SITE = "bench-site"
EDGES = 8  # the load spreads events over this many edge ids and upload threads, as a site would
MAX_SERVERS = 8
MAX_CAMERAS = 10000
MAX_SNAPSHOT_KB = 50 * 1024  # the server's max_evidence_bytes
SNAPSHOT_KB = 143  # median snapshot the edge writes (docs/deploy.md, sizing)
GOAL_EPS = 2000.0
GOAL_P99_MS = 200.0
GOAL_RATE = 200.0


class BenchRefused(ValueError):
    """The options do not make a bench; every problem is listed."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class IngestOptions:
    db: str
    servers: int = 1
    events: int = 20000
    rate: float = GOAL_RATE
    seconds: float = 10.0
    window: int = 500
    snapshot_kb: int = SNAPSHOT_KB
    snapshot_every: int = 1  # one event in this many carries a snapshot (1: every event)
    cameras: int = 1
    s3: bool = False
    s3_endpoint: str | None = None
    mqtt: str | None = None  # None: a private Mosquitto started by the bench

    @property
    def scheme(self) -> str:
        """The URL's scheme without its driver (`postgresql+psycopg` → `postgresql`)."""
        return self.db.split("://", 1)[0].split("+", 1)[0]

    @property
    def database(self) -> str:
        """`postgresql` or `sqlite`."""
        return "postgresql" if self.scheme == "postgres" else self.scheme

    @property
    def store(self) -> str:
        if self.s3:
            return "s3 (moto)"
        if self.s3_endpoint is not None:
            return "s3"
        return "local disk"

    def problems(self, env: Mapping[str, str] | None = None) -> list[str]:
        """Every reason these options do not make a bench (empty: they do). `env`: where the
        keys for `--s3-endpoint` are read (os.environ when None)."""
        env = os.environ if env is None else env
        found = []
        if self.database not in ("sqlite", "postgresql"):
            found.append(f"--db must be sqlite:///path or postgresql://..., not {self.scheme}://")
        if not 1 <= self.servers <= MAX_SERVERS:
            found.append(f"--servers must be 1 to {MAX_SERVERS}, got {self.servers}")
        elif self.servers > 1 and self.database == "sqlite":
            found.append("several server processes need PostgreSQL (SQLite serves one process)")
        if self.events < 1:
            found.append(f"--events must be at least 1, got {self.events}")
        if not self.rate > 0:
            found.append(f"--rate must be more than 0, got {self.rate:g}")
        if not self.seconds > 0:
            found.append(f"--seconds must be more than 0, got {self.seconds:g}")
        if self.window < 1:
            found.append(f"--window must be at least 1, got {self.window}")
        if not 0 <= self.snapshot_kb <= MAX_SNAPSHOT_KB:
            found.append(f"--snapshot-kb must be 0 to {MAX_SNAPSHOT_KB}, got {self.snapshot_kb}")
        if self.snapshot_every < 1:
            found.append(f"--snapshot-every must be at least 1, got {self.snapshot_every}")
        if not 1 <= self.cameras <= MAX_CAMERAS:
            found.append(f"--cameras must be 1 to {MAX_CAMERAS}, got {self.cameras}")
        if self.s3 and self.s3_endpoint is not None:
            found.append("--s3 (moto, started by the bench) and --s3-endpoint cannot go together")
        if self.mqtt is not None:
            try:
                if parse_mqtt_url(self.mqtt).tls:
                    found.append("--mqtt: the bench speaks plain MQTT (mqtt://host:port)")
            except ValueError as error:
                found.append(f"--mqtt: {error}")
        if self.s3_endpoint is not None:
            if not self.s3_endpoint.startswith(("http://", "https://")):
                found.append(f"--s3-endpoint must be http(s)://host:port, not {self.s3_endpoint}")
            for name in ("ZHIZHI_S3_ACCESS_KEY_ID", "ZHIZHI_S3_SECRET_ACCESS_KEY"):
                if not env.get(name):
                    found.append(f"--s3-endpoint needs {name} in the environment")
        return found

    def check(self, env: Mapping[str, str] | None = None) -> IngestOptions:
        problems = self.problems(env)
        if problems:
            raise BenchRefused(problems)
        return self


# -- pure figures ----------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending `ordered` (q in 0..100): the smallest value with at
    least q % of the values at or below it. NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is 0 to 100, not {q}")
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        ordered = sorted(seconds)
        return cls(
            count=len(ordered),
            p50_ms=percentile(ordered, 50) * 1000,
            p99_ms=percentile(ordered, 99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        )

    def cell(self) -> str:
        if not self.count:
            return "–"
        return f"{self.p50_ms:.1f} / {self.p99_ms:.1f}"


@dataclass(frozen=True, slots=True)
class Tally:
    """What the database holds of what was sent."""

    sent: int
    stored: int  # distinct (event_id, seq) of the run in the database
    rows: int  # rows of the run in the database

    @property
    def lost(self) -> int:
        return self.sent - self.stored

    @property
    def duplicates(self) -> int:
        return self.rows - self.stored


@dataclass(frozen=True, slots=True)
class IngestBench:
    options: IngestOptions
    stored_eps: float  # throughput run: events / time until the last ack
    complete_eps: float  # ... until the last ack and the last snapshot stored
    event: LatencySummary  # latency run: publish → ack
    complete: LatencySummary  # latency run: publish → ack and snapshot stored
    upload: LatencySummary  # latency run: snapshot PUT → answer
    tally: Tally
    duplicate_acks: int
    upload_failures: dict[str, int]
    snapshots_expected: int
    snapshots_in_store: int | None  # objects in the bucket; None: local disk (not counted)
    held_eps: float  # the rate the latency run actually sent at
    cpu: CpuUse | None = None
    machine: str = field(default_factory=platform.machine)

    HEADER = (
        "| servers | database | evidence | cameras | events | events/s stored | events/s with "
        "snapshot stored | latency test rate (events/s) | p50 / p99 publish→stored ms | p50 / p99 "
        "publish→stored with snapshot ms | lost | duplicates | snapshots in the store |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )

    def evidence_cell(self) -> str:
        o = self.options
        if not o.snapshot_kb:
            return "none"
        which = "each" if o.snapshot_every == 1 else f"with 1 event in {o.snapshot_every}"
        return f"{o.snapshot_kb} kB snapshot {which}, {o.store}"

    def store_cell(self) -> str:
        failed = sum(self.upload_failures.values())
        have = "–" if self.snapshots_in_store is None else str(self.snapshots_in_store)
        text = f"{have} of {self.snapshots_expected}" if self.options.snapshot_kb else "–"
        if failed:
            reasons = ", ".join(f"{n}× {why}" for why, n in sorted(self.upload_failures.items()))
            text += f" ({failed} uploads failed: {reasons})"
        return text

    def markdown_row(self) -> str:
        o = self.options
        with_snapshot = f"{self.complete_eps:.0f}" if o.snapshot_kb else "–"
        duplicates = f"{self.tally.duplicates} rows, {self.duplicate_acks} acks twice"
        return (
            f"| {o.servers} | {o.database} | {self.evidence_cell()} | {o.cameras} | {o.events} | "
            f"{self.stored_eps:.0f} | {with_snapshot} | {o.rate:g} | {self.event.cell()} | "
            f"{self.complete.cell() if o.snapshot_kb else '–'} | {self.tally.lost} | "
            f"{duplicates} | {self.store_cell()} |"
        )

    def verdict(self) -> str:
        """The issue's goal, met or not, in one line: ≥ 2,000 events/s (with their snapshots
        when they carry one) and p99 publish → stored < 200 ms at 200 events/s (the worse of
        the event alone and the event with its snapshot)."""
        o = self.options
        eps = self.complete_eps if o.snapshot_kb else self.stored_eps
        throughput = ("met" if eps >= GOAL_EPS else "NOT met") + f" ({eps:,.0f})"
        p99 = max(self.event.p99_ms, self.complete.p99_ms if o.snapshot_kb else 0.0)
        if o.rate < GOAL_RATE:
            latency = f"not measured (the latency run held {o.rate:g} events/s)"
        else:
            latency = ("met" if p99 < GOAL_P99_MS else "NOT met") + f" ({p99:.0f} ms)"
        whole = "yes" if self.tally.lost == 0 and self.tally.duplicates == 0 else "NO"
        scope = ""
        if o.servers < 2 or not o.snapshot_kb or o.store == "local disk":
            scope = " (the goal is set for two processes with evidence in object storage)"
        return (
            f"goal{scope}: ≥ {GOAL_EPS:,.0f} events/s {throughput}; p99 < {GOAL_P99_MS:.0f} ms "
            f"at {GOAL_RATE:.0f} events/s {latency}; nothing lost or doubled: {whole}"
        )

    def details(self) -> str:
        """The figures the table leaves out."""
        text = (
            f"latency run: {self.held_eps:.0f} events/s sent (asked {self.options.rate:g}); "
            f"publish→stored ms: p50 {self.event.p50_ms:.1f}, p99 {self.event.p99_ms:.1f}, "
            f"max {self.event.max_ms:.1f}"
        )
        if self.options.snapshot_kb:
            text += (
                f"; snapshot PUT → stored ms: p50 {self.upload.p50_ms:.1f}, "
                f"p99 {self.upload.p99_ms:.1f}, max {self.upload.max_ms:.1f}; with its "
                f"snapshot: p99 {self.complete.p99_ms:.1f}, max {self.complete.max_ms:.1f}"
            )
        if self.cpu is not None:
            text += f". {self.cpu.text()}"
        return text

    def append_to(self, path: Path, command: str) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        o = self.options
        block = (
            f"\n### ingest, {o.servers} server process(es), {o.database}, {o.cameras} camera(s), "
            f"evidence {self.evidence_cell()} ({when}, {self.machine}, {os.cpu_count()} cores)"
            "\n\n"
            f"```\nzhizhi {command}\n```\n\n{self.HEADER}\n{self.markdown_row()}\n\n"
            f"{self.details()}.\n\n{self.verdict()}.\n"
        )
        with path.open("a", encoding="utf-8") as stream:
            stream.write(block)


@dataclass(frozen=True, slots=True)
class CpuUse:
    """Cores kept busy during the throughput run: the whole machine and each named process."""

    cores: int
    machine: float
    by_process: dict[str, float]

    def text(self) -> str:
        named = ", ".join(f"{name} {used:.2f}" for name, used in self.by_process.items())
        rest = max(0.0, self.machine - sum(self.by_process.values()))
        return (
            f"CPU in the throughput run, cores busy of {self.cores}: {self.machine:.2f} in all "
            f"({named}; the rest, {rest:.2f}: PostgreSQL and whatever else ran)"
        )


def machine_ticks(proc_stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks over all cores from /proc/stat's first line (idle and iowait
    are not busy; guest time is already counted in user)."""
    ticks = [int(value) for value in proc_stat.splitlines()[0].split()[1:9]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def process_ticks(pid_stat: str) -> int:
    """utime + stime clock ticks from /proc/<pid>/stat (the name in parentheses may hold
    spaces and parentheses: fields are counted after the last ')')."""
    fields = pid_stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_use(
    before: tuple[tuple[int, int], dict[str, int]],
    after: tuple[tuple[int, int], dict[str, int]],
    cores: int,
) -> CpuUse:
    """From two samples ((busy, total) of the machine, ticks by process name): the cores each
    kept busy in between; a process missing from either sample is left out."""
    (busy0, total0), named0 = before
    (busy1, total1), named1 = after
    span = max(1, total1 - total0)  # ticks of all cores together
    return CpuUse(
        cores=cores,
        machine=(busy1 - busy0) / span * cores,
        by_process={
            name: (named1[name] - named0[name]) / span * cores for name in named0 if name in named1
        },
    )


def camera_of(index: int, cameras: int) -> tuple[str, str]:
    """(edge id, camera id) of the index-th event: round robin over `cameras`, camera c on
    edge c mod 8. All events of one camera (and its one rule and zone) group into one incident
    while they keep coming: one camera is the worst case, every batch locks that incident."""
    camera = index % cameras
    return f"edge-{camera % EDGES}", f"cam-{camera}"


def latencies(
    sent: Sequence[tuple[str, float]],
    acked: Mapping[str, float],
    uploaded: Mapping[str, float] | None = None,
    carries: Callable[[str], bool] = lambda _event_id: True,
) -> list[float]:
    """Seconds from each (event_id, sent at) to its ack, or with `uploaded` to the later of its
    ack and its snapshot's upload (for the events that `carries` one); events missing either
    are left out (counted as lost)."""
    found = []
    for event_id, at in sent:
        done = acked.get(event_id)
        if done is not None and uploaded is not None and carries(event_id):
            stored = uploaded.get(event_id)
            done = None if stored is None else max(done, stored)
        if done is not None:
            found.append(done - at)
    return found


def snapshot_bytes(run: str, index: int, filler: bytes) -> bytes:
    """A JPEG-typed file unique to (run, index): SOI, a comment segment naming it, `filler`
    (the bulk, shared by all), EOI. The server sniffs the type from the first bytes."""
    comment = f"zhizhi bench {run} {index}".encode()
    return (
        b"\xff\xd8\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + filler + b"\xff\xd9"
    )


# -- the load process ------------------------------------------------------------------------


class _CpuSampler:
    """Samples /proc for the machine and the named processes (None off Linux)."""

    def __init__(self, pids: Sequence[tuple[str, int]]) -> None:
        self.pids = list(pids)

    def sample(self) -> tuple[tuple[int, int], dict[str, int]] | None:
        try:
            machine = machine_ticks(Path("/proc/stat").read_text())
        except (OSError, ValueError, IndexError):
            return None
        named = {}
        for name, pid in self.pids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                named[name] = process_ticks(Path(f"/proc/{pid}/stat").read_text())
        return machine, named


@dataclass(frozen=True)
class _LoadPlan:
    pids: tuple[tuple[str, int], ...]  # the processes whose CPU is counted
    broker: MqttUrl
    servers: tuple[str, ...]
    token: str
    run: str
    events: int
    rate: float
    seconds: float
    window: int
    snapshot_kb: int
    snapshot_every: int
    cameras: int

    def carries(self, index: int) -> bool:
        """Whether the event of this index comes with a snapshot."""
        return bool(self.snapshot_kb) and index % self.snapshot_every == 0


@dataclass(frozen=True)
class _LoadResult:
    stored_s: float
    complete_s: float
    event_s: list[float]
    complete_latency_s: list[float]
    upload_s: list[float]
    duplicate_acks: int
    upload_failures: dict[str, int]
    sent: int
    held_eps: float
    cpu: CpuUse | None


def held_rate(sent: Sequence[tuple[str, float]]) -> float:
    """Events per second between the first and the last send (NaN for fewer than two)."""
    if len(sent) < 2 or sent[-1][1] <= sent[0][1]:
        return math.nan
    return (len(sent) - 1) / (sent[-1][1] - sent[0][1])


class _Publisher:
    """Publishes events and waits for their acks; keeps at most `window` unacknowledged."""

    def __init__(self, broker: MqttUrl, window: int) -> None:
        self._sent: dict[str, float] = {}
        self.acked: dict[str, float] = {}  # event_id → perf_counter of its first ack
        self.duplicate_acks = 0
        self._lock = threading.Condition()
        self._window = window
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}"
        )
        self._client.max_inflight_messages_set(window)
        self._client.on_message = self._on_ack
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        self._client.connect(broker.host, broker.port)
        self._client.subscribe(f"zhizhi/v1/{SITE}/+/ack", qos=1)
        self._client.loop_start()
        time.sleep(0.3)

    def _on_ack(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        ack = AckMessage.model_validate_json(message.payload)
        now = time.perf_counter()
        with self._lock:
            if self._sent.pop(ack.event_id, None) is not None:
                self.acked[ack.event_id] = now
            elif ack.event_id in self.acked:
                self.duplicate_acks += 1
            self._lock.notify_all()

    def publish(self, topic: str, payload: str, event_id: str) -> None:
        with self._lock:
            self._lock.wait_for(lambda: len(self._sent) < self._window, timeout=60)
            self._sent[event_id] = time.perf_counter()
        self._client.publish(topic, payload, qos=1)

    def drain(self, timeout_s: float = 120.0) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: not self._sent, timeout=timeout_s):
                raise TimeoutError(f"{len(self._sent)} events were never acknowledged")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class _Uploader:
    """PUTs snapshots as edges' uploaders do, one thread per edge, at most `window` waiting."""

    def __init__(self, token: str, window: int) -> None:
        self._http = httpx.Client(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0, connect=5.0),
            limits=httpx.Limits(max_connections=EDGES * 2, max_keepalive_connections=EDGES * 2),
        )
        self._pool = ThreadPoolExecutor(max_workers=EDGES, thread_name_prefix="upload")
        self._slots = threading.Semaphore(window)
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self.done: dict[str, float] = {}  # event_id → perf_counter of a 200/201
        self.took: list[float] = []
        self.failures: Counter[str] = Counter()

    def submit(self, event_id: str, url: str, body: bytes) -> None:
        self._slots.acquire()
        self._futures.append(self._pool.submit(self._put, event_id, url, body))

    def _put(self, event_id: str, url: str, body: bytes) -> None:
        started = time.perf_counter()
        outcome = "no answer"
        try:
            answer = self._http.put(url, content=body, headers={"Content-Type": "image/jpeg"})
            outcome = "ok" if answer.status_code in (200, 201) else f"HTTP {answer.status_code}"
        except (httpx.HTTPError, OSError) as error:
            outcome = type(error).__name__
        finally:
            now = time.perf_counter()
            self._slots.release()
        with self._lock:
            if outcome == "ok":
                self.done[event_id] = now
                self.took.append(now - started)
            else:
                self.failures[outcome] += 1

    def drain(self) -> None:
        wait(self._futures)
        self._futures.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()


def _event_json(plan: _LoadPlan, index: int, evidence: list[dict[str, str]]) -> tuple[str, str]:
    edge, camera = camera_of(index, plan.cameras)
    event = Event.model_validate(
        {
            "event_id": f"{plan.run}-{index}",
            "seq": 0,
            "state": "new",
            "type": "fire_lane",
            "site_id": SITE,
            "camera_id": camera,
            "zone_id": "lane",
            "rule_id": "lane-blocked",
            "observed_at": datetime.now(UTC),
            "pts_s": 130.0,
            "onset_pts_s": 10.0,
            "bbox": [0.1, 0.2, 0.3, 0.4],
            "score": 0.9,
            "details": {"blocked_s": 120.0},
            "evidence": evidence,
        }
    )
    return events_topic(SITE, edge, camera), event.to_json()


def _send(
    plan: _LoadPlan, index: int, filler: bytes, publisher: _Publisher, uploader: _Uploader
) -> tuple[str, float, float]:
    """One event: its snapshot to a server, then the event. (event_id, when it was made, when
    it was published): an edge publishes at once, its uploads queue on their own, but the
    load waits for an upload slot first when `window` uploads are outstanding."""
    event_id = f"{plan.run}-{index}"
    evidence = []
    started = time.perf_counter()
    if plan.carries(index):
        body = snapshot_bytes(plan.run, index, filler)
        sha = hashlib.sha256(body).hexdigest()
        url = f"{plan.servers[index % len(plan.servers)]}/api/v1/evidence/{sha}"
        uploader.submit(event_id, url, body)
        evidence = [{"kind": "snapshot", "sha256": sha, "content_type": "image/jpeg", "url": url}]
    topic, payload = _event_json(plan, index, evidence)
    published = time.perf_counter()  # after any wait for an upload slot
    publisher.publish(topic, payload, event_id)
    return event_id, started, published


def _run_load(plan: _LoadPlan) -> _LoadResult:
    """In a process of its own: the throughput run, then the paced latency run."""
    filler = os.urandom(plan.snapshot_kb * 1024)
    publisher = _Publisher(plan.broker, plan.window)
    uploader = _Uploader(plan.token, plan.window)
    sampler = _CpuSampler([*plan.pids, ("load (8 edges)", os.getpid())])
    try:
        before = sampler.sample()
        started = time.perf_counter()
        for index in range(plan.events):
            _send(plan, index, filler, publisher, uploader)
        publisher.drain()
        stored_s = time.perf_counter() - started
        uploader.drain()
        complete_s = max(stored_s, time.perf_counter() - started)
        after = sampler.sample()
        cores = os.cpu_count() or 1
        cpu = None if before is None or after is None else cpu_use(before, after, cores)

        uploader.took.clear()
        paced: list[tuple[str, float, float]] = []
        started = time.perf_counter()
        for index in range(int(plan.rate * plan.seconds)):
            delay = started + index / plan.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            paced.append(_send(plan, plan.events + index, filler, publisher, uploader))
        publisher.drain()
        uploader.drain()
        return _LoadResult(
            stored_s=stored_s,
            complete_s=complete_s,
            event_s=latencies([(e, published) for e, _, published in paced], publisher.acked),
            complete_latency_s=latencies(
                [(e, made) for e, made, _ in paced],
                publisher.acked,
                uploader.done if plan.snapshot_kb else None,
                lambda event_id: plan.carries(int(event_id.rsplit("-", 1)[1])),
            ),
            upload_s=list(uploader.took),
            duplicate_acks=publisher.duplicate_acks,
            upload_failures=dict(uploader.failures),
            sent=plan.events + len(paced),
            held_eps=held_rate([(e, made) for e, made, _ in paced]),
            cpu=cpu,
        )
    finally:
        uploader.close()
        publisher.close()


# -- the services ----------------------------------------------------------------------------


class _Bucket:
    """The run's own bucket: created before the servers start; for a real store emptied and
    removed at the end (moto's goes with its process)."""

    def __init__(self, endpoint: str, key: str, secret: str, name: str, keep: bool) -> None:
        import boto3

        self.name = name
        self._keep = keep
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=os.environ.get("ZHIZHI_S3_REGION", "us-east-1"),
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        self._client.create_bucket(Bucket=name)

    def object_keys(self) -> list[str]:
        found: list[str] = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def remove(self) -> None:
        if self._keep:
            return
        keys = self.object_keys()
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": key} for key in keys[start : start + 1000]]
            self._client.delete_objects(Bucket=self.name, Delete={"Objects": chunk})
        self._client.delete_bucket(Bucket=self.name)


def _count(db_url: str, run: str) -> tuple[int, int]:
    """(distinct (event_id, seq), rows) of the run in the database."""
    from sqlalchemy import text

    from server.db.session import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            distinct, rows = connection.execute(
                text(
                    "SELECT count(DISTINCT event_id || '/' || seq), count(*) FROM events "
                    "WHERE event_id LIKE :run"
                ),
                {"run": f"{run}-%"},
            ).one()
    finally:
        engine.dispose()
    return int(distinct), int(rows)


Services = list[tuple[str, subprocess.Popen[bytes] | None]]  # name, process (CPU counted)


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    return 0 if process is None else process.pid


def _object_store(
    options: IngestOptions, stack: contextlib.ExitStack, run: str, services: Services
) -> tuple[_Bucket | None, dict[str, str]]:
    """The run's bucket (on moto started here, added to `services`, or on --s3-endpoint) and
    the servers' settings for it; (None, {}) for the servers' local media folders."""
    from zhizhi.local_services import MotoS3

    if options.s3:
        moto = MotoS3()
        stack.callback(moto.stop)
        moto.start()
        services.append(("S3 (moto)", moto.process))
        endpoint, key, secret = moto.url, moto.ACCESS_KEY, moto.SECRET_KEY
    elif options.s3_endpoint is not None:
        endpoint = options.s3_endpoint
        key = os.environ["ZHIZHI_S3_ACCESS_KEY_ID"]
        secret = os.environ["ZHIZHI_S3_SECRET_ACCESS_KEY"]
    else:
        return None, {}
    bucket = _Bucket(endpoint, key, secret, f"zhizhi-bench-{run}", keep=options.s3)
    stack.callback(bucket.remove)
    return bucket, {
        "ZHIZHI_EVIDENCE_STORE": "s3",
        "ZHIZHI_S3_BUCKET": bucket.name,
        "ZHIZHI_S3_ENDPOINT_URL": endpoint,
        "ZHIZHI_S3_ACCESS_KEY_ID": key,
        "ZHIZHI_S3_SECRET_ACCESS_KEY": secret,
    }


def _stop(server: ServerProcess) -> None:
    """A clean stop (it leaves the broker at once), else SIGKILL."""
    try:
        server.terminate()
    except (subprocess.TimeoutExpired, ServiceFailed):
        server.stop()


def bench_ingest(options: IngestOptions) -> IngestBench:
    from server.auth import issue_token
    from server.db.session import migrate
    from zhizhi.local_services import PrivateBroker, temporary_postgres_database

    options.check()
    run = uuid.uuid4().hex[:10]
    services: Services = []
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zhizhi-bench-")))
        if options.database == "postgresql":
            db_url = stack.enter_context(temporary_postgres_database(options.db, "zhizhi_bench"))
        else:
            db_url = options.db
            migrate(db_url)
        if options.mqtt is None:
            broker = PrivateBroker(folder / "broker", ["max_queued_messages 100000"])
            stack.callback(broker.stop)
            broker.start()
            services.append(("Mosquitto", broker.process))
            mqtt_url = broker.url
        else:
            mqtt_url = options.mqtt
        env = {
            "ZHIZHI_DB_URL": db_url,
            "ZHIZHI_MQTT_URL": mqtt_url,
            "ZHIZHI_MQTT_GROUP": f"zhizhi-bench-{run}",
            "ZHIZHI_MQTT_SESSION_EXPIRY_S": "0",  # nothing stays at the broker
        }
        bucket, store_env = _object_store(options, stack, run, services)
        env |= store_env
        servers = [
            ServerProcess(folder / f"srv-{n}", f"bench-{run}-srv-{n}", env)
            for n in range(1, options.servers + 1)
        ]
        for server in servers:
            stack.callback(_stop, server)
            server.start()
        for server in servers:
            server.wait_healthy(timeout_s=90)
        time.sleep(0.5)  # healthy means connected; let the shared subscriptions settle
        pids = [(f"server {n}", _pid(server.process)) for n, server in enumerate(servers, 1)]
        pids += [(name, _pid(process)) for name, process in services]
        plan = _LoadPlan(
            pids=tuple((name, pid) for name, pid in pids if pid),
            broker=parse_mqtt_url(mqtt_url),
            servers=tuple(server.base for server in servers),
            token=issue_token(db_url, "edge", "bench", [SITE], days=1),
            run=run,
            events=options.events,
            rate=options.rate,
            seconds=options.seconds,
            window=options.window,
            snapshot_kb=options.snapshot_kb,
            snapshot_every=options.snapshot_every,
            cameras=options.cameras,
        )
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            load = pool.submit(_run_load, plan).result()
        for server in servers:
            server.healthy()  # raises when one died during the run
        stored, rows = _count(db_url, run)
        in_store = None
        if bucket is not None:
            in_store = sum(1 for key in bucket.object_keys() if key.startswith("evidence/"))
    return IngestBench(
        options=options,
        stored_eps=options.events / load.stored_s,
        complete_eps=options.events / load.complete_s,
        event=LatencySummary.of(load.event_s),
        complete=LatencySummary.of(load.complete_latency_s),
        upload=LatencySummary.of(load.upload_s),
        tally=Tally(sent=load.sent, stored=stored, rows=rows),
        duplicate_acks=load.duplicate_acks,
        upload_failures=load.upload_failures,
        snapshots_expected=(
            -(-load.sent // options.snapshot_every) if options.snapshot_kb else 0
        ),  # events 0, every, 2 * every, ... of 0 to sent - 1
        snapshots_in_store=in_store,
        held_eps=load.held_eps,
        cpu=load.cpu,
    )
