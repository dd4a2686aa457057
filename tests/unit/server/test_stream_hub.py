"""The live-push hub without HTTP: each subscriber gets its sites' messages, a heartbeat
when idle, and a lagging client loses the oldest messages, never the newest, and is then told
to reconnect (its stream ends) so that it re-reads what it missed."""

from __future__ import annotations

import asyncio
import json

from server.notify import StreamHub, StreamMessage


def message(site: str, number: int) -> StreamMessage:
    return StreamMessage("incident", {"id": number, "site_id": site}, site)


def test_subscribers_see_only_their_sites_and_heartbeats_when_idle() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        hub = StreamHub()
        north = hub.subscribe(frozenset({"north-park"}))
        everyone = hub.subscribe(None)
        hub.publish(message("south-park", 1))
        hub.publish(message("north-park", 2))
        await asyncio.sleep(0)  # let call_soon_threadsafe deliver

        async def never() -> bool:
            return False

        frames = hub.frames(north, never, heartbeat_s=0.01)
        got = [await anext(frames) for _ in range(3)]
        await frames.aclose()
        seen = [everyone.queue.get_nowait().encode() for _ in range(everyone.queue.qsize())]
        assert hub.subscribers == 1  # closing the stream unsubscribed it
        return got, seen

    got, seen = asyncio.run(scenario())

    assert got[0] == ": connected\n\n"
    assert got[1].startswith("event: incident\ndata: ")
    assert json.loads(got[1].split("data: ", 1)[1])["id"] == 2
    assert got[2] == ": heartbeat\n\n"
    assert len(seen) == 2


def test_a_lagging_subscriber_keeps_the_newest_messages() -> None:
    async def scenario() -> list[int]:
        hub = StreamHub()
        subscriber = hub.subscribe(None)
        for number in range(subscriber.queue.maxsize + 10):
            hub.publish(message("s", number))
        await asyncio.sleep(0)
        assert subscriber.dropped == 10
        return [subscriber.queue.get_nowait().data["id"] for _ in range(subscriber.queue.qsize())]

    ids = asyncio.run(scenario())

    assert len(ids) == 1000
    assert ids[0] == 10 and ids[-1] == 1009


def test_a_subscriber_that_lost_messages_is_sent_away_to_reconnect_and_re_read() -> None:
    async def scenario() -> tuple[list[str], int]:
        hub = StreamHub()
        steady, lagging = hub.subscribe(None), hub.subscribe(None)
        for number in range(3):
            hub.publish(message("s", number))
        await asyncio.sleep(0)
        lagging.dropped = 1  # as offer() counts when its queue was full

        async def never() -> bool:
            return False

        frames = [frame async for frame in hub.frames(lagging, never, heartbeat_s=0.01)]
        steady_stream = hub.frames(steady, never, heartbeat_s=0.01)
        kept = [await anext(steady_stream) for _ in range(4)]
        await steady_stream.aclose()
        return [*frames, "--", *kept], hub.subscribers

    got, subscribers = asyncio.run(scenario())

    assert got[:3] == [": connected\n\n", "retry: 1000\n\n", "--"]  # ended, nothing stale
    assert [json.loads(f.split("data: ", 1)[1])["id"] for f in got[4:]] == [0, 1, 2]
    assert subscribers == 0
