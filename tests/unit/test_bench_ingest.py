"""The ingest bench's option checks, percentile and summary maths, and its verdict."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from zhizhi.bench_ingest import (
    BenchRefused,
    CpuUse,
    IngestBench,
    IngestOptions,
    LatencySummary,
    Tally,
    camera_of,
    cpu_use,
    held_rate,
    latencies,
    machine_ticks,
    percentile,
    process_ticks,
    snapshot_bytes,
)

PG = "postgresql://postgres@127.0.0.1:5432"
KEYS = {"ZHIZHI_S3_ACCESS_KEY_ID": "k", "ZHIZHI_S3_SECRET_ACCESS_KEY": "s"}


def test_two_servers_on_postgresql_with_moto_are_a_bench() -> None:
    options = IngestOptions(db=PG, servers=2, s3=True)
    assert options.problems({}) == []
    assert IngestOptions(db=PG, mqtt="mqtt://emqx.local:1883").problems({}) == []
    assert (options.database, options.store) == ("postgresql", "s3 (moto)")
    assert IngestOptions(db="postgresql+psycopg://h/db").database == "postgresql"
    assert IngestOptions(db="postgres://h/db").database == "postgresql"
    assert IngestOptions(db="sqlite:////tmp/x.db").store == "local disk"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (IngestOptions(db="sqlite:////tmp/b.db", servers=2), "several server processes"),
        (IngestOptions(db=PG, servers=0), "--servers must be 1 to 8"),
        (IngestOptions(db=PG, servers=9), "--servers must be 1 to 8"),
        (IngestOptions(db="mysql://h/db"), "--db must be sqlite"),
        (IngestOptions(db=PG, rate=0), "--rate must be more than 0"),
        (IngestOptions(db=PG, seconds=-1), "--seconds must be more than 0"),
        (IngestOptions(db=PG, window=0), "--window must be at least 1"),
        (IngestOptions(db=PG, snapshot_kb=-1), "--snapshot-kb must be 0 to"),
        (IngestOptions(db=PG, s3=True, s3_endpoint="http://m:9000"), "cannot go together"),
        (IngestOptions(db=PG, s3_endpoint="m:9000"), "must be http(s)://"),
        (IngestOptions(db=PG, mqtt="mqtts://broker:8883"), "the bench speaks plain MQTT"),
        (IngestOptions(db=PG, cameras=0), "--cameras must be 1 to"),
        (IngestOptions(db=PG, mqtt="http://broker"), "--mqtt: MQTT URL must look like"),
    ],
)
def test_options_that_make_no_bench_are_refused(options: IngestOptions, problem: str) -> None:
    with pytest.raises(BenchRefused) as refused:
        options.check(KEYS)
    assert any(problem in line for line in refused.value.problems), refused.value.problems


def test_a_real_object_store_needs_its_keys_and_every_problem_is_listed() -> None:
    options = IngestOptions(db="sqlite:///b.db", servers=3, s3_endpoint="http://minio:9000")
    problems = options.problems({})
    assert len(problems) == 3
    assert "ZHIZHI_S3_ACCESS_KEY_ID" in problems[1]
    assert "ZHIZHI_S3_SECRET_ACCESS_KEY" in problems[2]
    assert options.problems(KEYS) == [problems[0]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (1, 1.0), (50, 50.0), (50.5, 51.0), (99, 99.0), (99.5, 100.0), (100, 100.0)],
)
def test_percentile_is_the_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(v) for v in range(1, 101)], q) == expected


def test_percentile_of_few_values_and_of_none() -> None:
    assert percentile([0.2], 99) == 0.2
    assert percentile([0.1, 0.3], 50) == 0.1
    assert percentile([0.1, 0.3], 99) == 0.3
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="0 to 100"):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds_whatever_the_order() -> None:
    summary = LatencySummary.of([0.003, 0.001, 0.002, 0.100])
    assert summary.count == 4
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.p99_ms == pytest.approx(100.0)
    assert summary.max_ms == pytest.approx(100.0)
    assert summary.cell() == "2.0 / 100.0"
    assert LatencySummary.of([]).cell() == "–"


def test_latencies_wait_for_the_ack_and_with_uploads_for_the_snapshot_too() -> None:
    sent = [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    acked = {"a": 1.05, "b": 2.02}  # c never acked
    uploaded = {"a": 1.20, "b": 2.01}
    assert latencies(sent, acked) == pytest.approx([0.05, 0.02])
    assert latencies(sent, acked, uploaded) == pytest.approx([0.20, 0.02])
    assert latencies(sent, acked, {"a": 1.2}) == pytest.approx([0.20])  # b's file never came
    # only a carries a snapshot: b is complete at its ack
    only_a = latencies(sent, acked, {"a": 1.2}, carries=lambda event_id: event_id == "a")
    assert only_a == pytest.approx([0.20, 0.02])


def test_one_event_in_snapshot_every_carries_a_snapshot_and_the_cell_says_so() -> None:
    options = IngestOptions(db=PG, servers=2, s3=True, snapshot_every=10)
    assert (
        "143 kB snapshot with 1 event in 10, s3 (moto)" in bench(options, 2100, 150).markdown_row()
    )
    assert IngestOptions(db=PG, snapshot_every=0).problems() == [
        "--snapshot-every must be at least 1, got 0"
    ]


def test_events_go_round_robin_over_the_cameras_each_camera_on_one_edge() -> None:
    assert [camera_of(i, 1) for i in (0, 7, 8)] == [("edge-0", "cam-0")] * 3
    assert [camera_of(i, 10) for i in (0, 3, 9, 10, 18)] == [
        ("edge-0", "cam-0"),
        ("edge-3", "cam-3"),
        ("edge-1", "cam-9"),
        ("edge-0", "cam-0"),
        ("edge-0", "cam-8"),
    ]


def test_the_held_rate_is_counted_between_the_first_and_the_last_send() -> None:
    sent = [(str(n), 10.0 + n / 200) for n in range(2000)]
    assert held_rate(sent) == pytest.approx(200.0)
    assert held_rate([("a", 10.0), ("b", 10.5), ("late", 12.0)]) == pytest.approx(1.0)
    assert math.isnan(held_rate(sent[:1]))


def test_the_tally_counts_what_was_lost_and_what_was_doubled() -> None:
    tally = Tally(sent=1000, stored=997, rows=999)
    assert (tally.lost, tally.duplicates) == (3, 2)


def test_snapshots_are_jpeg_typed_and_unique_to_their_event() -> None:
    filler = bytes(1024)
    first, second = snapshot_bytes("r1", 1, filler), snapshot_bytes("r1", 2, filler)
    assert first.startswith(b"\xff\xd8\xff") and first.endswith(b"\xff\xd9")
    assert int.from_bytes(first[4:6], "big") == len(b"zhizhi bench r1 1") + 2  # segment length
    assert hashlib.sha256(first).digest() != hashlib.sha256(second).digest()
    assert len(first) == 4 + 2 + len(b"zhizhi bench r1 1") + 1024 + 2


def bench(
    options: IngestOptions, eps: float, p99_ms: float, lost: int = 0, failures: int = 0
) -> IngestBench:
    event = LatencySummary(count=2000, p50_ms=30.0, p99_ms=p99_ms / 2, max_ms=p99_ms)
    complete = LatencySummary(count=2000, p50_ms=40.0, p99_ms=p99_ms, max_ms=p99_ms * 2)
    return IngestBench(
        options=options,
        stored_eps=eps * 1.5,
        complete_eps=eps,
        event=event,
        complete=complete,
        upload=complete,
        tally=Tally(sent=22000, stored=22000 - lost, rows=22000 - lost),
        duplicate_acks=0,
        upload_failures={"HTTP 503": failures} if failures else {},
        snapshots_expected=22000,
        snapshots_in_store=22000 - failures,
        held_eps=199.6,
        machine="x86_64",
    )


def test_the_verdict_judges_the_goal_with_the_snapshot_in_the_path() -> None:
    two = IngestOptions(db=PG, servers=2, s3=True)
    met = bench(two, eps=2100, p99_ms=150).verdict()
    assert met == (
        "goal: ≥ 2,000 events/s met (2,100); p99 < 200 ms at 200 events/s met (150 ms); "
        "nothing lost or doubled: yes"
    )
    short = bench(two, eps=900, p99_ms=450, lost=2).verdict()
    assert "events/s NOT met (900)" in short
    assert "NOT met (450 ms)" in short
    assert "nothing lost or doubled: NO" in short


def test_the_verdict_says_when_the_run_is_not_the_goals_set_up() -> None:
    one = bench(IngestOptions(db=PG, servers=1, s3=True), eps=2100, p99_ms=150).verdict()
    assert one.startswith("goal (the goal is set for two processes with evidence in object")
    slow = IngestOptions(db=PG, servers=2, s3=True, rate=50)
    assert "not measured (the latency run held 50 events/s)" in bench(slow, 2100, 150).verdict()
    bare = IngestOptions(db=PG, servers=2, snapshot_kb=0)
    verdict = bench(bare, eps=2100, p99_ms=150).verdict()
    assert "met (3,150)" in verdict  # events alone: the time to the last ack
    assert "met (75 ms)" in verdict


def test_the_row_and_the_written_block_carry_every_figure(tmp_path: Path) -> None:
    result = bench(IngestOptions(db=PG, servers=2, s3=True), 1800, 120, failures=3)
    cells = [cell.strip() for cell in result.markdown_row().strip("|").split("|")]
    header = [cell.strip() for cell in IngestBench.HEADER.splitlines()[0].strip("|").split("|")]
    assert len(cells) == len(header)
    assert cells[:6] == [
        "2",
        "postgresql",
        "143 kB snapshot each, s3 (moto)",
        "1",
        "20000",
        "2700",
    ]
    assert cells[6:11] == ["1800", "200", "30.0 / 60.0", "40.0 / 120.0", "0"]
    assert cells[12] == "21997 of 22000 (3 uploads failed: 3× HTTP 503)"
    path = tmp_path / "bench.md"
    result.append_to(path, "bench ingest --servers 2 --s3")
    text = path.read_text()
    assert "```\nzhizhi bench ingest --servers 2 --s3\n```" in text
    assert "latency run: 200 events/s sent (asked 200)" in text
    assert "snapshot PUT → stored ms: p50 40.0, p99 120.0" in text
    assert "goal: ≥ 2,000 events/s NOT met (1,800)" in text


def test_cpu_is_read_from_proc_stat_and_a_process_stat_with_an_odd_name() -> None:
    stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n"
    assert machine_ticks(stat) == (160, 1000)  # idle 800 and iowait 40 are not busy
    pid_stat = "4242 (zhizhi (srv) 1) S 1 4242 4242 0 -1 4194304 900 0 0 0 123 45 0 0 20 0 9"
    assert process_ticks(pid_stat) == 168


def test_cpu_use_is_in_cores_of_the_machine() -> None:
    before = ((1000, 10000), {"server 1": 100, "S3 (moto)": 50, "gone": 7})
    after = ((2800, 12000), {"server 1": 700, "S3 (moto)": 250})  # 2,000 ticks on 2 cores
    use = cpu_use(before, after, cores=2)
    assert use.machine == pytest.approx(1.8)
    assert use.by_process == pytest.approx({"server 1": 0.6, "S3 (moto)": 0.2})
    assert use.text() == (
        "CPU in the throughput run, cores busy of 2: 1.80 in all (server 1 0.60, S3 (moto) "
        "0.20; the rest, 1.00: PostgreSQL and whatever else ran)"
    )
    assert (
        CpuUse(2, 0.5, {"load": 0.7})
        .text()
        .endswith("the rest, 0.00: PostgreSQL and whatever else ran)")
    )
