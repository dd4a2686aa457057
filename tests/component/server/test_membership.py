"""Server membership (issue 18) on a real SQLite database with a clock the test moves and a
recording stand-in for the broker: join, heartbeat, the gone removed once after the grace with
their session ended and an audit entry, never this process, and the API and /metrics views."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.consumers.sessions import SessionNotEnded
from server.db.models import AuditRow, ServerMemberRow
from server.metrics import render
from server.services.membership import Counts, MemberIdentity, Membership

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
GRACE_S, BEAT_S = 120.0, 10.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Broker:
    """Records the sessions ended; `down` makes ending fail as an unreachable broker does."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.down = False

    def end(self, client_id: str) -> None:
        if self.down:
            raise SessionNotEnded("broker not reachable")
        self.ended.append(client_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def member(
    session_factory: sessionmaker[Session], clock: Clock, broker: Broker
) -> Callable[[str], Membership]:
    def make(client_id: str, taken: int = 0) -> Membership:
        return Membership(
            session_factory,
            MemberIdentity(client_id, "zhizhi-server", f"host-{client_id}", 1000),
            grace_s=GRACE_S,
            heartbeat_s=BEAT_S,
            counts=lambda: Counts(taken, taken),
            end_session=broker.end,
            clock=clock,
        )

    return make


def states(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_factory() as session:
        return {row.client_id: row.state for row in session.scalars(select(ServerMemberRow))}


def test_a_member_gone_longer_than_the_grace_is_removed_once_with_its_session_ended(
    member: Callable[..., Membership],
    session_factory: sessionmaker[Session],
    clock: Clock,
    broker: Broker,
) -> None:
    alive, gone, also_alive = member("srv-a", 40), member("srv-b", 60), member("srv-c")
    for one in (alive, gone, also_alive):
        one.join()
    gone.tick()  # its last heartbeat, with the events it took
    clock.advance(GRACE_S - 1)  # srv-b falls silent; the others beat on
    assert alive.tick() == []
    also_alive.tick()
    clock.advance(2)

    assert alive.tick() == ["srv-b"]
    assert also_alive.tick() == []  # removed once, by one process
    assert broker.ended == ["srv-b"]
    assert states(session_factory) == {"srv-a": "live", "srv-b": "removed", "srv-c": "live"}
    with session_factory() as session:
        (entry,) = session.scalars(select(AuditRow)).all()
    assert (entry.actor, entry.role, entry.action) == ("srv-a", "system", "remove_server_member")
    assert entry.target == "server srv-b"
    assert entry.details["events_taken"] == 60
    assert entry.details["gone_s"] == pytest.approx(GRACE_S + 1)


def test_a_process_never_removes_itself_however_late_its_own_beat(
    member: Callable[..., Membership], clock: Clock, broker: Broker
) -> None:
    alone = member("srv-a")
    alone.join()
    clock.advance(10 * GRACE_S)
    assert alone.tick() == []
    assert broker.ended == []


def test_a_stopped_member_that_kept_its_session_is_removed_after_the_grace(
    member: Callable[..., Membership],
    session_factory: sessionmaker[Session],
    clock: Clock,
    broker: Broker,
) -> None:
    renamed, successor = member("srv-old"), member("srv-new")
    renamed.join()
    renamed.stop(session_ended=False)  # the last member: it kept its session for a restart
    successor.join()  # ... which came under another client id
    assert states(session_factory)["srv-old"] == "stopped"
    clock.advance(GRACE_S / 2)
    assert successor.tick() == []
    clock.advance(GRACE_S / 2 + 1)
    assert successor.tick() == ["srv-old"]
    assert broker.ended == ["srv-old"]


def test_a_member_that_left_with_its_session_ended_is_not_touched(
    member: Callable[..., Membership],
    session_factory: sessionmaker[Session],
    clock: Clock,
    broker: Broker,
) -> None:
    leaving, staying = member("srv-a"), member("srv-b")
    leaving.join()
    staying.join()
    assert leaving.should_end_session()  # srv-b is live and takes its turn
    leaving.stop(session_ended=True)
    clock.advance(2 * GRACE_S)
    assert staying.tick() == []
    assert broker.ended == []
    assert states(session_factory)["srv-a"] == "left"
    assert not staying.should_end_session()  # now it is the last live member


def test_while_the_broker_is_away_the_gone_wait_for_the_next_beat(
    member: Callable[..., Membership],
    session_factory: sessionmaker[Session],
    clock: Clock,
    broker: Broker,
) -> None:
    alive, gone = member("srv-a"), member("srv-b")
    alive.join()
    gone.join()
    clock.advance(GRACE_S + 1)
    broker.down = True
    assert alive.tick() == []
    assert states(session_factory)["srv-b"] == "live"
    broker.down = False
    clock.advance(BEAT_S)
    assert alive.tick() == ["srv-b"]


def test_a_removed_member_that_was_alive_after_all_is_live_again(
    member: Callable[..., Membership],
    session_factory: sessionmaker[Session],
    clock: Clock,
) -> None:
    alive, stalled = member("srv-a"), member("srv-b")
    alive.join()
    stalled.join()
    clock.advance(GRACE_S + 1)
    assert alive.tick() == ["srv-b"]
    stalled.tick()  # its database writes were stuck; its broker connection came back new
    assert states(session_factory)["srv-b"] == "live"


def test_admins_see_the_members_and_metrics_show_each_ones_share(
    member: Callable[..., Membership],
    client: TestClient,
    auth: Callable[[str], dict[str, str]],
    clock: Clock,
) -> None:
    first, second = member("srv-a", 120), member("srv-b", 80)
    first.join()
    second.join()
    first.tick()
    second.tick()
    clock.advance(GRACE_S + 1)
    first.tick()

    answer = client.get("/api/v1/server-members", headers=auth("admin"))
    assert answer.status_code == 200
    body = answer.json()
    by_id = {item["client_id"]: item for item in body["items"]}
    assert by_id["srv-a"]["state"] == "live" and by_id["srv-a"]["events_taken"] == 120
    assert by_id["srv-b"]["state"] == "removed" and by_id["srv-b"]["ended_by"] == "srv-a"
    assert body["grace_s"] == 120.0  # the server's own setting
    assert client.get("/api/v1/server-members", headers=auth("operator")).status_code == 403

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(render().decode())
        for sample in family.samples
        if sample.name.startswith("zhizhi_server_member")
    }
    assert samples[("zhizhi_server_members", (("state", "live"),))] == 1
    assert samples[("zhizhi_server_members", (("state", "removed"),))] == 1
    taken = ("client_id", "srv-a"), ("host", "host-srv-a"), ("state", "live")
    assert samples[("zhizhi_server_member_events_taken", taken)] == 120
    assert not any(dict(labels).get("client_id") == "srv-b" for _, labels in samples)
