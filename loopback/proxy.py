"""A TCP proxy on loopback that can make a service go away: for fault tests and benchmarks.

Put it between markq and Redis, PostgreSQL or the S3 server; then

- `refuse()`: every open connection is reset and new ones are closed at once (a restart, a
  crash, a network cut);
- `hang()`: connections stay open but no byte moves either way (a server that stopped answering);
- `restore()`: traffic flows again (connections cut by `refuse` stay cut, as after a restart);
- `cut_after(n)`: once n more bytes have gone upstream, refuse (a link that drops mid-upload).
"""

from __future__ import annotations

import contextlib
import enum
import select
import socket
import threading
from types import TracebackType

CHUNK = 65536
POLL_SECONDS = 0.1


class Mode(enum.StrEnum):
    passing = "passing"
    refusing = "refusing"
    hanging = "hanging"


class FaultProxy:
    """Forwards 127.0.0.1:<port> to `upstream` until told otherwise."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = Mode.passing
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._cut_at: int | None = None  # bytes still allowed upstream before the link drops
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}")

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._close_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def refuse(self) -> None:
        self.mode = Mode.refusing
        self._close_all()

    def hang(self) -> None:
        self.mode = Mode.hanging

    def restore(self) -> None:
        self.mode = Mode.passing
        self._cut_at = None

    def cut_after(self, upstream_bytes: int) -> None:
        self._cut_at = upstream_bytes

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == Mode.refusing:
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        while self.mode == Mode.hanging and not self._stopped.is_set():
            self._stopped.wait(POLL_SECONDS)  # accepted, never answered
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pairs = {client: upstream, upstream: client}
        try:
            while not self._stopped.is_set() and self.mode != Mode.refusing:
                if self.mode == Mode.hanging:
                    self._stopped.wait(POLL_SECONDS)
                    continue
                ready, _, _ = select.select(list(pairs), [], [], POLL_SECONDS)
                for sock in ready:
                    data = sock.recv(CHUNK)
                    if not data:
                        return
                    if sock is client and self._cut_at is not None:
                        self._cut_at -= len(data)
                        if self._cut_at <= 0:
                            self.refuse()
                            return
                    pairs[sock].sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(client)
                self._open.discard(upstream)
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
