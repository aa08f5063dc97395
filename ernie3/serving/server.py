"""Running the FastAPI service: the listening socket (taken before models load), uvicorn with deadlines for slow
clients, start-up (memory budget, models, warm-up) and shutdown (uvicorn handles SIGINT/SIGTERM; the models'
workers stop with it)."""
from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Callable, Optional

from ernie3.errors import UserError
from ernie3.serving.app import create_app
from ernie3.serving.config import ServerSettings, ServingConfig, resolve_api_key
from ernie3.serving.worker import ModelRegistry


LINGER_S = 2.0  # how long a connection closed on a client error still drains input (see _close_lingering)


def read_timeout_protocol(read_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a deadline for request headers, which uvicorn itself does not have: a connection
    that has not sent a request's complete headers `read_timeout_s` after connecting, or after the first byte of its
    next request, is answered 408 and closed. (Idle keep-alive connections are closed by uvicorn's own
    timeout_keep_alive; the body has its own deadline in read_body.)"""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    def closing_response(status: str, message: str) -> bytes:
        """A whole JSON error response, for when no request has been parsed (so h11 cannot build one)."""
        body = json.dumps({"error": message}).encode()
        head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {len(body)}"
        return head.encode() + b"\r\n\r\n" + body

    timeout_response = closing_response("408 Request Timeout", f"request headers did not arrive within {read_timeout_s:g} s")

    class ReadTimeoutH11Protocol(H11Protocol):
        _read_timer: Optional[asyncio.TimerHandle] = None

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._draining:
                return
            if self._read_timer is None and self._between_requests():
                self._arm()  # the first byte of a new request
            super().data_received(data)
            if not self._between_requests():
                self._disarm()  # its headers are in: the app reads the body, with its own deadline

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm()
            super().connection_lost(exc)

        _draining = False

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers malformed HTTP (bad request line, headers over h11's size limit) in plain text
            message = "malformed HTTP request (a bad request line or header, or oversized headers)"
            self.transport.write(closing_response("400 Bad Request", message))
            self._close_lingering()

        def _close_lingering(self) -> None:
            """Close after the answer without resetting: closing a socket with unread input sends a reset that can
            destroy the answer before the client reads it, so stop writing, drain input briefly, then close."""
            self._draining = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if self.transport.is_closing() or not self._between_requests():
                return
            if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:  # nothing answered yet
                self.transport.write(timeout_response)
            self._close_lingering()

    return ReadTimeoutH11Protocol


def is_loopback_host(host: str) -> bool:
    """Whether every address `host` means is a loopback one (an unresolvable host counts as not loopback)."""
    import ipaddress

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def bind_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The listening address, taken before models load: a port in use fails at once, and port 0 picks a free one."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UserError(f"--host: cannot resolve {host!r} ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    # listening already: a client that connects between the "serving ... on URL" line and uvicorn's start waits in
    # the backlog instead of being refused
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(config: ServingConfig, server: ServerSettings, progress: Callable[[str], None] = print) -> None:
    """Serve `config.models` on `server`'s address until the process is told to stop; `progress` gets the start-up
    lines, the last of them "serving N model(s) (...) on URL"."""
    from ernie3.memory import check_memory_budget

    api_key = resolve_api_key(server)
    for line in check_memory_budget(config.models, server.max_memory_mb):  # before anything is loaded
        progress(line)
    sock = bind_socket(server.host, server.port, server.reuse_port)
    if api_key is None and not is_loopback_host(server.host):
        progress(f"warning: listening on {server.host}, beyond this machine, without an API key: anyone who reaches "
                 "the port can use the models (set server.api_key_env)")  # fmt: skip
    registry = ModelRegistry.load(config.models, progress)
    import uvicorn

    app = create_app(registry, server, api_key)
    uvicorn_config = uvicorn.Config(
        app, log_level=server.log_level, access_log=server.access_log, lifespan="on",
        http=read_timeout_protocol(server.read_timeout_s), timeout_keep_alive=server.keep_alive_s,
    )  # fmt: skip
    # tests and scripts read this line to find the port (with --port 0)
    progress(f"serving {len(registry.workers)} model(s) ({', '.join(registry.workers)}) on {url_of(sock)}")
    try:
        uvicorn.Server(uvicorn_config).run(sockets=[sock])
    finally:
        registry.stop()
