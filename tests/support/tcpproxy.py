"""A TCP proxy on 127.0.0.1 that a test controls, to cut the network between two processes.

`TcpProxy(target_port)` forwards every connection to 127.0.0.1:target_port. `cut("reset")`
closes every connection and refuses new ones (a cable pulled, a router that answers RST);
`cut("blackhole")` keeps the connections open but forwards nothing either way, and new ones are
accepted and starved (a silent partition: only keepalives notice). `restore()` forwards again;
a blackholed connection is closed then, as a partition that lasted would have killed it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Literal

from tests.support.mosquitto import free_port

CutMode = Literal["reset", "blackhole"]


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._mode: CutMode | None = None
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self.cuts = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def cut(self, mode: CutMode = "reset") -> None:
        with self._lock:
            self._mode = mode
            self.cuts += 1
            if mode == "reset":
                self._close_all()

    def restore(self) -> None:
        with self._lock:
            if self._mode == "blackhole":
                self._close_all()
            self._mode = None

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for pair in self._pairs:
            for side in pair:
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)
                side.close()
        self._pairs.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "reset":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                with self._lock:
                    if (client, upstream) not in self._pairs:
                        return
                    starving = self._mode == "blackhole"
                if starving:  # hold everything: neither side hears from the other
                    self._stop.wait(0.05)
                    continue
                for key, _ in selector.select(timeout=0.05):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))
            for side in (client, upstream):
                with contextlib.suppress(OSError):
                    side.close()
