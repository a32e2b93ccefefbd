"""The HTTP server around an ASGI application (serve.py's model API, or tune's dashboard): uvicorn
on a socket bound first, Starlette's TrustedHostMiddleware, and the bounds uvicorn lacks.

- Hosts: bound to a loopback address, the server answers only requests addressed to it by a
  loopback name, in any case (a web page cannot reach it through a DNS name that resolves to
  127.0.0.1: DNS rebinding), plus the names --allow-host adds; any other Host is answered 400.
- Connections: a request's head (its line and headers) must arrive within HEAD_SECONDS of the
  connection being ready for it, or the connection is closed (a half-sent request, slowloris, holds
  nothing for long); at most `capacity` connections are open, below the process's descriptor limit:
  a new one closes the connection idle longest, or is closed itself where none is idle. A request
  with both Content-Length and Transfer-Encoding (ambiguous: how request smuggling starts) is answered
  400 and its connection closed.
- Shutdown: SIGTERM or Ctrl-C stop accepting connections, let the requests in flight finish for up
  to SHUTDOWN_SECONDS, then cut them off.
- Logs: each request is logged (method, path, status, milliseconds) unless the access log is off;
  names from the outside with control characters escaped; uvicorn's and asyncio's messages become one
  line each, a line repeated within REPEAT_SECONDS said once.
"""

import asyncio
import errno
import logging
import os
import resource
import signal
import socket
import time

from cnnclf.errors import ConfigError, first_line, plural, printable

log = logging.getLogger("cnnclf")

SHUTDOWN_SECONDS = 5  # how long requests in flight may take once SIGTERM or Ctrl-C arrives
HEAD_SECONDS = 10  # how long a connection may take to send a request's line and headers
ACCEPTED_AT_ONCE = 64  # connections accepted in one turn of the event loop (uvicorn's backlog: 2,048)
REPEAT_SECONDS = 10  # a log line said again within this is dropped
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # as a Host header names them


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything slow starts: a port in use, or an address this
    machine does not have, is one line (exit 2). Port 0 takes a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:
        sock.close()
        if getattr(e, "errno", None) == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use; choose another --port, or --port 0 for a free one"
            ) from None
        if isinstance(e, socket.gaierror) or getattr(e, "errno", None) == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host {host}: not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({e}); choose another --host or --port") from None
    sock.listen(128)
    return sock


def served_hosts(sock: socket.socket, allow_hosts=()) -> list[str]:
    """The Host names answered: loopback names on a loopback socket, any name elsewhere (unless
    --allow-host names some), and the --allow-host names."""
    host = sock.getsockname()[0]
    if host in LOOPBACK:
        return [*LOOPBACK_NAMES, *allow_hosts]
    return [host, *allow_hosts] if allow_hosts else ["*"]


def serve_app(app, sock: socket.socket, hosts: list[str], access_log: bool = True) -> int:
    """Serve the ASGI `app` on `sock` until SIGTERM or Ctrl-C, which let the requests in flight finish
    (for up to SHUTDOWN_SECONDS); the number of requests cut off then."""
    import uvicorn
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    cut_off = [0]
    guarded = _guarded(TrustedHostMiddleware(app, allowed_hosts=hosts), access_log, cut_off)
    config = uvicorn.Config(
        guarded,
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        lifespan="on",
        http=_bounded_protocol(_capacity()),
        backlog=ACCEPTED_AT_ONCE,  # those closed to make room are closed before the next turn accepts more
    )
    _logs_in_one_line()
    for signum in (signal.SIGINT, signal.SIGTERM):  # uvicorn raises the signal again once it has shut down
        signal.signal(signum, lambda *args: None)
    uvicorn.Server(config).run(sockets=[sock])
    return cut_off[0]


def serve(run, sock: socket.socket, max_batch: int, wait_ms: float, allow_hosts=(), access_log: bool = True) -> None:
    """Serve a run's model (serve.py's application) on `sock`."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("cnnclf serve needs FastAPI and uvicorn: pip install 'cnnclf[serve]'") from None
    from cnnclf.inference.serve import create_app

    app = create_app(run, max_batch, wait_ms)
    status = run.status()
    if status["status"] != "completed":
        done = plural(status.get("epochs_done", 0), "epoch")
        log.warning(
            f"warning: {run.path.name} is {status['status']} ({done} done): the model served is its best so far, "
            f"not its final one"
        )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    exposed = "" if host in LOOPBACK else "; this address is reachable from the network, with no authentication"
    log.info(f"serving {run.path.name} on http://{shown}:{port} (POST /predict, GET /metadata){exposed}")
    cut_off = serve_app(app, sock, served_hosts(sock, allow_hosts), access_log)
    if cut_off:
        log.info(f"stopped: {plural(cut_off, 'request')} in flight after {SHUTDOWN_SECONDS} s cut off")
    else:
        log.info("stopped: the requests in flight were answered")


def _capacity() -> int:
    """Connections to hold at most: the descriptors this process may open (its soft limit raised to
    the hard one), less those open now, three turns of accepted connections (accepted, made, and those
    closed to make room, which close a turn later) and a reserve for files; at most 4,096."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 64
    return max(8, min(4096, soft - open_now - 3 * ACCEPTED_AT_ONCE - 32))


def _bounded_protocol(capacity: int):
    """uvicorn's HTTP/1.1 protocol (written against uvicorn 0.54) with the head deadline and the
    connection bound."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Bounded(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.idle_since, self.head_timer = time.monotonic(), None
            self._await_head()
            open_ = [c for c in self.connections if isinstance(c, Bounded) and not c.transport.is_closing()]
            if len(open_) > capacity:  # the one idle longest makes room (one closed already is still listed)
                idle = [c for c in open_ if c is not self and c.waiting()]
                (min(idle, key=lambda c: c.idle_since) if idle else self).transport.close()

        def waiting(self) -> bool:  # for a request's head: no request is in progress
            return self.cycle is None or self.cycle.response_complete

        def _await_head(self) -> None:
            self.idle_since = time.monotonic()
            self.head_timer = self.loop.call_later(HEAD_SECONDS, self._head_late)

        def _head_late(self) -> None:
            if self.waiting():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self.waiting() and self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()

        def connection_lost(self, exc):
            if self.head_timer is not None:
                self.head_timer.cancel()
            super().connection_lost(exc)

    return Bounded


def _logs_in_one_line() -> None:
    """uvicorn's and asyncio's warnings and errors as cnnclf's lines (a traceback's first line only),
    each said once within REPEAT_SECONDS (asyncio repeats its accept error for every waiting connection)."""
    said: dict[str, float] = {}

    class OneLine(logging.Handler):
        def emit(self, record):
            line = first_line(record.getMessage(), 1000)
            if line.startswith("Cancel ") or time.monotonic() - said.get(line, -REPEAT_SECONDS) < REPEAT_SECONDS:
                return  # requests cut off by the shutdown are said once it is done
            said[line] = time.monotonic()
            log.warning(f"server: {printable(line)}")

    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [OneLine(logging.WARNING)], False


def _guarded(app, access_log: bool, cut_off: list[int]):
    """The application behind two checks of every HTTP request: an ambiguous body length is refused
    (and its connection closed), and a line goes to the log once it is answered. It counts the
    requests cut off by the shutdown (cancelled once SHUTDOWN_SECONDS have passed)."""
    from starlette.responses import JSONResponse

    async def serve_request(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started, status = time.perf_counter(), [0]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        names = {name.lower() for name, _ in scope["headers"]}
        try:
            if b"content-length" in names and b"transfer-encoding" in names:
                refusal = "the request has both Content-Length and Transfer-Encoding; send one of them"
                await JSONResponse({"error": refusal}, 400, {"connection": "close"})(scope, receive, sending)
            else:
                await app(scope, receive, sending)
        except asyncio.CancelledError:  # the shutdown's bound passed: the request ends here, unanswered
            cut_off[0] += 1
        finally:
            if access_log:
                milliseconds = (time.perf_counter() - started) * 1000
                log.info(f"{scope['method']} {printable(scope['path'])} {status[0]} {milliseconds:.0f} ms")

    return serve_request
