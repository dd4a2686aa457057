"""`zhizhi demo`: the whole system on one machine, with no outside service.

An embedded MQTT broker (amqtt), the server on SQLite (REST API + MQTT ingestion + evidence
store), and the production edge worker (`edge run`) on built-in synthetic scenes: a fire lane
where a box is left standing and later taken away, a lane with traffic only, and a high-rise
facade (with its floors marked) from whose 9th floor an object is thrown. Events are printed
as the server stores them, read back through the REST API.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from common.config import load_site_config
from common.events import BoxLoad, CameraLoad, Event
from edge.offline import falling_synthetic
from edge.offline.falling_synthetic import FacadeScene
from edge.offline.synthetic import LANE, LaneScene, write_frames, write_video
from edge.runtime.worker import EdgeOptions, run_edge
from server.auth import create_token
from server.db.session import make_session_factory
from server.main import build_server
from server.services.directory import directory_from_config, store_directory
from server.settings import ServerSettings
from server.users import create_user
from zhizhi.embedded_broker import EmbeddedBroker, free_port

STATE_STYLE = {"new": "bold red", "update": "yellow", "end": "green"}
SCENES = {
    # camera id: (scene, what happens)
    "lane-a": (LaneScene(seconds=60, drop_s=6, clear_s=40), "a box is left at 6 s, taken at 40 s"),
    "lane-b": (LaneScene(seconds=60, drop_s=None, seed=11), "traffic only: no alert expected"),
}
FACADE = FacadeScene(seconds=60, release_s=12.0, release_floor=9, object_px=4.0)
LOOP_S = 60.0  # every scene is a minute long, then plays again
DWELL_S, CLEAR_S = 8.0, 5.0  # the lanes' rules (see _site_yaml)
STORY_SLACK_S = 10.0  # a story is told (or not) this long after its moment
FACADE_STORY = "an object is thrown from the 9th floor at 12 s: 高空抛物 alert with its floor"


def _site_yaml(folder: Path) -> Path:
    polygon = ", ".join(f"[{x}, {y}]" for x, y in LANE)
    cameras = "".join(
        f"""
  - id: {camera}
    name: 消防通道 {camera}
    source: {camera}.mp4
    zones: [{{id: fire-lane, name: 消防通道, polygon: [{polygon}]}}]
    rules:
      - {{id: {camera}-blocked, name: 消防通道占用 {camera}, type: fire_lane, zone: fire-lane,
          dwell_s: 8, clear_s: 5, update_interval_s: 15}}
"""
        for camera in SCENES
    )
    floors = ", ".join(
        f"{{floor: {k}, line: {FACADE.floor_line(k)}}}" for k in (1, 6, FACADE.floors)
    )
    cameras += f"""
  - id: facade-a
    name: 高空抛物 A栋东立面 facade A
    source: facade-a.mp4
    zones: [{{id: facade, name: A栋立面, polygon: [[0.02, 0.02], [0.98, 0.02], [0.98, 0.96],
             [0.02, 0.96]]}}]
    rules:
      - {{id: facade-a-throw, name: A栋高空抛物, type: falling_object, zone: facade,
          floors: [{floors}]}}
"""
    path = folder / "demo-site.yaml"
    path.write_text(f"site: {{id: demo-court, name: 演示小区 Demo Court}}\ncameras:{cameras}")
    return path


def _show(console: Console, event: Event) -> None:
    style = STATE_STYLE[event.state]
    evidence = ", ".join(e.url.rsplit("/", 1)[-1][:12] for e in event.evidence) or "-"
    console.print(
        f"[{style}]{event.state:>6}[/] {event.type} camera={event.camera_id} "
        f"zone={event.zone_id} onset={event.onset_pts_s:.1f}s at={event.pts_s:.1f}s "
        f"score={event.score:.2f} seq={event.seq} evidence={evidence}"
        + (f" floor={event.details['origin_floor']}" if "origin_floor" in event.details else ""),
        soft_wrap=True,  # one line per message, however narrow the terminal
    )


class _Uvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the demo handles Ctrl-C itself
        pass


def run_demo(seconds: float | None = None, port: int | None = None) -> None:
    console = Console(highlight=False)
    folder = Path(tempfile.mkdtemp(prefix="zhizhi-demo-"))
    for camera, (scene, _) in SCENES.items():
        write_video(scene, str(folder / f"{camera}.mp4"))
    write_frames(falling_synthetic.frames(FACADE), str(folder / "facade-a.mp4"), FACADE.fps)
    site = load_site_config(_site_yaml(folder))
    port = port or free_port()
    with EmbeddedBroker() as broker:
        settings = ServerSettings(
            db_url=f"sqlite:///{folder / 'zhizhi.db'}",
            mqtt_url=broker.url,
            port=port,
            media_dir=folder / "media",
            mqtt_client_id="zhizhi-demo-server",
        )
        runtime = build_server(settings, shared=False, mqtt_version="3.1.1")
        logins = {role: secrets.token_urlsafe(9) for role in ("admin", "operator", "field")}
        names = {"admin": "演示管理员", "operator": "演示值班员", "field": "演示物业"}
        with make_session_factory(runtime.engine)() as session:
            admin = create_token(session, "admin", "demo operator")
            edge_token = create_token(session, "edge", "demo edge box")
            for role, password in logins.items():
                create_user(
                    session,
                    username=role,
                    password=password,
                    role=role,
                    sites=["*"],
                    display_name=names[role],
                    team="property_management" if role == "field" else None,
                )
            # the dashboard shows the config's names (演示小区, 高空抛物 A栋东立面), ids as tooltips
            store_directory(
                session,
                site.site.id,
                directory_from_config(site),
                by="demo",
                at=datetime.now(UTC),
            )
            session.commit()
        web = _Uvicorn(
            uvicorn.Config(runtime.app, host="127.0.0.1", port=port, log_level="warning")
        )
        web_thread = threading.Thread(target=web.run, name="http", daemon=True)
        web_thread.start()
        runtime.start_consumer()
        url = f"http://127.0.0.1:{port}"
        console.print("[bold]智治 Zhizhi demo[/]: broker, server and edge on this machine")
        console.print(f"  dashboard: {url}/   (API docs: {url}/docs)")
        console.print(f"  login:   admin / {logins['admin']}   operator / {logins['operator']}")
        console.print(f"           field / {logins['field']}  (物业: 我的工单 on a phone)")
        console.print(f"  API:     Authorization: Bearer {admin}")
        console.print(f"  broker:  {broker.url}   data: {folder}")
        for camera, (_, story) in SCENES.items():
            console.print(f"  camera {camera}: {story}; alert after 8 s blocked")
        console.print(f"  camera facade-a: {FACADE_STORY}")
        stop = threading.Event()
        options = EdgeOptions(
            evidence_dir=folder / "evidence",
            mqtt_url=broker.url,
            edge_id="demo-box",
            outbox_path=folder / "outbox.sqlite",
            server_url=url,
            token=edge_token,
        )
        loads: list[tuple[dict[str, CameraLoad], BoxLoad]] = []
        edge = threading.Thread(
            target=run_edge,
            args=(site, [], options, stop),
            kwargs={
                "install_signals": False,
                "on_load": lambda cameras, box: loads.append((cameras, box)),
            },
            name="edge",
            daemon=True,
        )
        edge.start()
        stored: list[Event] = []
        started = time.monotonic()
        try:
            _print_events(console, url, admin, seconds, stored)
        except KeyboardInterrupt:
            console.print("stopping")
        finally:
            stop.set()
            edge.join(timeout=15)
            web.should_exit = True
            web_thread.join(timeout=10)
            runtime.stop()
        _print_stories(console, stored, time.monotonic() - started)
        if loads:
            _print_box(console, *loads[-1])


def _print_events(
    console: Console, url: str, token: str, seconds: float | None, stored: list[Event]
) -> None:
    """Print what the server has stored, oldest first, as it arrives (until `seconds`); each
    message also goes into `stored`."""
    seen: set[tuple[str, int]] = set()
    deadline = None if seconds is None else time.monotonic() + seconds
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                page = client.get("/api/v1/events", params={"limit": 100}).json()
            except httpx.HTTPError:
                continue
            for item in reversed(page["items"]):
                event = Event.model_validate(item)
                if (event.event_id, event.seq) not in seen:
                    seen.add((event.event_id, event.seq))
                    stored.append(event)
                    _show(console, event)


def story_outcomes(stored: Sequence[Event], ran_s: float) -> dict[str, bool | None]:
    """Whether the server stored each story the demo promises (of the scenes' first pass);
    None for a story the run did not last long enough to tell (`ran_s` seconds of it)."""
    first = [e for e in stored if e.onset_pts_s < LOOP_S]
    lane_a = [e for e in first if e.camera_id == "lane-a" and e.type == "fire_lane"]
    throws = [e for e in first if e.camera_id == "facade-a" and e.state == "new"]
    release = FACADE.release_s or 0.0

    def by(seconds: float, told: bool) -> bool | None:
        return told if told or ran_s >= seconds + STORY_SLACK_S else None

    return {
        "lane-a: the box left in the lane at 6 s is reported": by(
            6.0 + DWELL_S,
            any(e.state == "new" and abs(e.onset_pts_s - 6.0) <= 5.0 for e in lane_a),
        ),
        "lane-a: taken away at 40 s, the blockage ends": by(
            40.0 + CLEAR_S, any(e.state == "end" for e in lane_a)
        ),
        "lane-b: traffic only, no alert": not any(e.camera_id == "lane-b" for e in stored),
        "facade-a: the throw from the 9th floor at 12 s, with its floor": by(
            release + 2.0,
            any(
                abs(e.onset_pts_s - release) <= 1.0
                and e.details.get("origin_floor") == FACADE.release_floor
                for e in throws
            ),
        ),
    }


def _print_stories(console: Console, stored: Sequence[Event], ran_s: float) -> None:
    console.print("[bold]stories[/] (the scenes' first pass):")
    for story, told in story_outcomes(stored, ran_s).items():
        mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]… not reached yet[/]"}
        console.print(f"  {mark[told]} {story}")


def _print_box(console: Console, cameras: dict[str, CameraLoad], box: BoxLoad) -> None:
    """The box's own figures of its last load report (docs/edge-runtime.md)."""
    table = Table(title="edge box (last report)", title_justify="left", show_edge=False)
    for column in ("camera", "state", "frames in/s", "analysed/s", "dropped/s", "coverage", "CPU"):
        table.add_column(column)
    for camera_id, load in sorted(cameras.items()):
        rate = load.frame_rule_fps if load.frame_rule_fps is not None else load.analysis_fps
        coverage = min((c.coverage for c in load.coverage.values()), default=1.0)
        table.add_row(
            camera_id,
            load.state,
            f"{load.camera_fps:.1f}",
            "-" if rate is None else f"{rate:.1f}",
            f"{load.dropped_fps:.1f}",
            f"{coverage:.2f}",
            f"{load.cpu * 100:.0f} %",
        )
    console.print(table)
    detector = box.detector
    console.print(
        f"  box: CPU {box.cpu * 100:.0f} % of {box.cores} cores, memory {box.memory_mb:.0f} MB, "
        f"detector busy {detector.busy * 100:.0f} %, p95 wait {detector.wait_p95_ms:.0f} ms"
    )
