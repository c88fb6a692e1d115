"""Running the app: in the foreground (``ferkit serve``) or in a background thread (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import struct
import threading
import time
from typing import Any

from ..errors import FerkitError


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0: a free one), or a :class:`FerkitError`
    that says why not (port taken, no permission, unknown address)."""
    if not 0 <= port <= 65535:
        raise FerkitError(f"--port must be between 0 and 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            why += " (another program listens there: try another --port, or --port 0 for any free one)"
        elif e.errno == errno.EACCES:
            why += " (ports below 1024 need root: try --port 8000)"
        raise FerkitError(f"cannot listen on {host}:{port}: {why}") from None
    except (socket.gaierror, UnicodeError) as e:
        sock.close()
        raise FerkitError(f"cannot listen on {host}:{port}: unknown address ({e})") from None
    return sock


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else
                                                        f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


#: seconds a connection has to send a request's headers (its first, or the next after a response)
HEAD_TIMEOUT = 30.0
#: seconds a response may wait, its write buffer full, for a client that reads none of it before
#: the connection is dropped: a client that never reads an annotated PNG would hold it forever.
#: A slow client that keeps reading is never dropped: each byte it takes restarts the wait
WRITE_TIMEOUT = 30.0
#: seconds between looks at how much of a paused response is still unsent (at most a quarter of
#: WRITE_TIMEOUT): the wait counts from the last look that found progress
WRITE_CHECK = 1.0


def _json_400_protocol() -> type:
    """uvicorn's HTTP protocol (its own choice: httptools when installed, else h11) answering
    the requests it cannot parse itself (a malformed request line, header or Content-Length) in
    the app's JSON error form instead of uvicorn's plain text (they never reach the app), and a
    request head (a connection's first, or the next after a response) that does not arrive within
    :data:`HEAD_TIMEOUT` with a JSON 408, and dropping a connection whose client has read nothing of
    its response for :data:`WRITE_TIMEOUT`."""
    import json

    import h11
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class JsonErrorProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            conn = getattr(self, "conn", None)
            if isinstance(conn, h11.Connection):  # h11's own verdict on a request it refuses (431: a head too
                # long), which uvicorn drops before send_400_response
                parse = conn.next_event

                def next_event():  # noqa: ANN202
                    try:
                        return parse()
                    except h11.RemoteProtocolError as e:
                        self._h11_status = e.error_status_hint
                        raise

                conn.next_event = next_event
            # uvicorn times out idle keep-alive connections but not a request head that never ends
            # (a client that sends half the headers and waits; its first byte stops uvicorn's
            # keep-alive timer): answer 408 and close. Armed for the first request here, again
            # after each response for the next one on the connection
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_expired)

        def pause_writing(self) -> None:
            # the buffer is full: the response (and its image) is dropped with the connection if
            # the client reads none of it for WRITE_TIMEOUT. uvicorn hands the whole body over at
            # once, so resume_writing comes only when nearly all of it is read: progress is told
            # by the unsent bytes shrinking between looks, every WRITE_CHECK seconds. (One look
            # WRITE_TIMEOUT after the pause counted the bytes the system still moved into the
            # client's receive buffer just after it, read by nobody, as progress: a client that
            # read nothing was dropped after twice WRITE_TIMEOUT)
            super().pause_writing()
            self._cancel_write_timer()
            self._write_left = self._unsent()
            self._write_progress = self.loop.time()
            self._write_timer = self.loop.call_later(self._write_check(), self._write_expired)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel_write_timer()

        def _unsent(self) -> int:
            """Bytes of the response not yet taken by the client: the transport's buffer and, where
            the system tells (Linux), the socket's send queue, which holds megabytes on a fast link:
            a client reading slowly first drains that, the buffer shrinking only after."""
            n = self.transport.get_write_buffer_size()
            sock = self.transport.get_extra_info("socket")
            try:
                import fcntl
                import termios

                n += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except (ImportError, AttributeError, OSError, ValueError):
                pass
            return n

        def _cancel_write_timer(self) -> None:
            timer = getattr(self, "_write_timer", None)
            if timer is not None:
                timer.cancel()
                self._write_timer = None

        @staticmethod
        def _write_check() -> float:
            return min(WRITE_CHECK, WRITE_TIMEOUT / 4)

        def _write_expired(self) -> None:
            # (also once the transport is closing: uvicorn closes it, the response handed over, at
            # once with "Connection: close" or when its keep-alive timer runs out; a close waits for
            # the buffer to drain, which a client that reads nothing never lets happen)
            self._write_timer = None
            if self.transport.get_write_buffer_size() == 0:
                return  # all of it handed to the system: nothing held here
            left, now = self._unsent(), self.loop.time()
            if left < self._write_left:  # taken since the last look: the wait starts again
                self._write_left, self._write_progress = left, now
            wait = self._write_progress + WRITE_TIMEOUT - now
            if wait > 1e-6:
                self._write_timer = self.loop.call_later(min(self._write_check(), wait), self._write_expired)
                return
            self.transport.abort()  # connection_lost frees the app's send (uvicorn marks it disconnected)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._head_timer.cancel()
            if not self.transport.is_closing():
                self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_expired)

        def _answer_and_close(self, status: bytes, error: str, detail: Any) -> None:
            """A JSON error written straight to the socket (uvicorn's cycle never started), then the end."""
            body = json.dumps({"error": error, "detail": detail}).encode()
            self.transport.write(b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                 b"x-content-type-options: nosniff\r\nconnection: close\r\n\r\n%s"
                                 % (status, len(body), body))
            self.transport.close()

        def _head_expired(self) -> None:
            cycle = getattr(self, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                # a request in progress (its head arrived in time; its upload or analysis may take
                # longer): the app's own --timeout governs it (a 408 for a late upload), and the
                # timer is armed again for the next head once it is answered
                return
            # no request in progress: none yet, or the last one answered (a pipelined next one
            # starts its own cycle at once)
            conn = getattr(self, "conn", None)
            if isinstance(conn, h11.Connection) and conn.their_state is h11.SEND_BODY:
                # the last request, answered, declared a body that never all came: no response is
                # owed (a 408 would be a second answer to that request): only the end
                self.transport.close()
                return
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                # (uvicorn writes no access line for it: no request was made; said in the server's log)
                peer = self.transport.get_extra_info("peername")
                who = f"{peer[0]}:{peer[1]}" if isinstance(peer, (tuple, list)) and len(peer) >= 2 else "a client"
                logging.getLogger("ferkit.serve").warning(
                    "%s - request headers not received in %g s: answered 408, connection closed", who, HEAD_TIMEOUT)
                self._answer_and_close(b"408 Request Timeout", "request headers not received in time",
                                       {"timeout_s": HEAD_TIMEOUT})

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_timer.cancel()
            self._cancel_write_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            cycle, conn = getattr(self, "cycle", None), getattr(self, "conn", None)
            if ((cycle is not None and cycle.response_started and not cycle.response_complete)
                    or (isinstance(conn, h11.Connection) and conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE))):
                # the app has answered this request already (e.g. an early 413 before the rest of a
                # malformed body): no second response on the connection, only its end
                self.transport.close()
                return
            limit = getattr(conn, "_max_incomplete_event_size", None)
            if getattr(self, "_h11_status", None) == 431:
                # what h11 refuses as "Receive buffer too long": a request head past its limit, still
                # coming (uvicorn says only "invalid request")
                self._answer_and_close(b"431 Request Header Fields Too Large", "request headers too large",
                                       {"limit_bytes": limit})
                return
            self._answer_and_close(b"400 Bad Request", "malformed HTTP request", msg)

    return JsonErrorProtocol


class _ShutdownAnswer:
    """The app, whose requests still running when the server stops (Ctrl+C, SIGTERM: uvicorn
    cancels them after its grace period) get a JSON 503 instead of uvicorn's text 500 and a
    traceback in the log."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started:  # (part of an answer went out: the connection just ends)
                return
            body = json.dumps({"error": "server shutting down", "detail": "the server stopped before this request "
                                                                          "was answered; retry once it is back"}).encode()
            try:
                await send({"type": "http.response.start", "status": 503,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
                                        (b"x-content-type-options", b"nosniff")]})
                await send({"type": "http.response.body", "body": body})
            except Exception:  # the client is gone
                pass


def _config(app: Any, log_level: str, **kw: Any) -> Any:
    """uvicorn's configuration; ferkit's own log (``ferkit.serve``: images read with a caveat, server
    faults) goes through uvicorn's handler, in its format, at ``--log-level``."""
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    logs = copy.deepcopy(LOGGING_CONFIG)
    logs["loggers"]["ferkit.serve"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return uvicorn.Config(_ShutdownAnswer(app), log_level=log_level, log_config=logs, server_header=False,
                          timeout_keep_alive=15, timeout_graceful_shutdown=5, http=_json_400_protocol(), **kw)


def run(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
        sock: socket.socket | None = None) -> None:
    """Serve ``app`` until Ctrl+C (uvicorn, one process; the app's worker threads do the CPU work).
    ``sock``: already bound by :func:`bind` (so that a taken port is reported before a model loads)."""
    import uvicorn

    sock = sock or bind(host, port)
    port = sock.getsockname()[1]
    try:
        server = uvicorn.Server(_config(app, log_level))
        print(f"ferkit serve: {_url(host, port)}/  (web page; API at /v1/analyze, docs at /docs; Ctrl+C stops)",
              flush=True)
        if host in ("0.0.0.0", "::"):
            print("ferkit serve: listening on every network interface; browsers allow the webcam only on "
                  "https:// pages or http://localhost", flush=True)
        server.run(sockets=[sock])
    finally:
        sock.close()


class ServerThread:
    """The app served by uvicorn in a background thread, on a free loopback port by default::

        with ServerThread(create_app()) as s:
            httpx.get(s.url + "/healthz")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    def start(self, timeout: float = 30.0) -> ServerThread:
        import uvicorn

        self.sock = bind(self.host, self.port)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(_config(self.app, self.log_level))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="ferkit-serve", daemon=True)
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                self.stop()
                raise FerkitError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
        if self.sock is not None:
            self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
