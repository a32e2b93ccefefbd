"""The HTTP server around serve.py's application: uvicorn on a socket bound first, and two checks
of every request.

Bound to a loopback address, the server answers only requests addressed to it by a loopback name
(a web page cannot reach it through a DNS name that resolves to 127.0.0.1: DNS rebinding), plus the
names --allow-host adds. SIGTERM or Ctrl-C stop accepting connections, let the requests in flight
finish for up to SHUTDOWN_SECONDS, then cut them off. Each request is logged (method, path,
status, milliseconds) unless the access log is off; names from the outside are logged with control
characters escaped. uvicorn's own messages become one line each.
"""

import asyncio
import errno
import logging
import signal
import socket
import time

from cnnclf.errors import ConfigError, plural, printable
from cnnclf.rundir.directory import RunDir

log = logging.getLogger("cnnclf")

SHUTDOWN_SECONDS = 5  # how long requests in flight may take once SIGTERM or Ctrl-C arrives
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def serve(
    run: RunDir, sock: socket.socket, max_batch: int, wait_ms: float, allow_hosts=(), access_log: bool = True
) -> None:
    """Serve on `sock` until SIGTERM or Ctrl-C, which let the requests in flight finish (for up to
    SHUTDOWN_SECONDS) and return."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("cnnclf serve needs FastAPI and uvicorn: pip install 'cnnclf[serve]'") from None
    host, port = sock.getsockname()[:2]
    hosts = {"127.0.0.1", "localhost", "[::1]", *allow_hosts} if host in LOOPBACK else None
    if hosts is None and allow_hosts:
        hosts = {host, *allow_hosts}
    from cnnclf.inference.serve import create_app

    app = create_app(run, max_batch, wait_ms)
    config = uvicorn.Config(
        guarded(app, hosts, access_log), log_config=None, timeout_graceful_shutdown=SHUTDOWN_SECONDS, lifespan="on"
    )
    _uvicorn_logs_in_one_line()
    status = run.status()
    if status["status"] != "completed":
        done = plural(status.get("epochs_done", 0), "epoch")
        log.warning(
            f"warning: {run.path.name} is {status['status']} ({done} done): the model served is its best so "
            f"far, not its final one"
        )
    shown = f"[{host}]" if ":" in host else host
    exposed = "" if host in LOOPBACK else "; this address is reachable from the network, with no authentication"
    log.info(f"serving {run.path.name} on http://{shown}:{port} (POST /predict, GET /metadata){exposed}")
    for signum in (signal.SIGINT, signal.SIGTERM):  # uvicorn raises the signal again once it has shut down
        signal.signal(signum, lambda *args: None)
    uvicorn.Server(config).run(sockets=[sock])
    if app.state.cut_off:
        log.info(f"stopped: {plural(app.state.cut_off, 'request')} in flight after {SHUTDOWN_SECONDS} s cut off")
    else:
        log.info("stopped: the requests in flight were answered")


def _uvicorn_logs_in_one_line() -> None:
    """uvicorn's warnings and errors as cnnclf's lines (a traceback's first line only)."""

    class OneLine(logging.Handler):
        def emit(self, record):
            line = record.getMessage().splitlines()[0]
            if not line.startswith("Cancel "):  # requests cut off by the shutdown: said once it is done
                log.warning(f"server: {printable(line)}")

    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [OneLine(logging.WARNING)], False


def guarded(app, hosts: set[str] | None, access_log: bool):
    """The application behind two checks of every HTTP request: the Host it names (a name that is
    not served is answered 400, against DNS rebinding), and a line in the log once it is answered.
    It counts the requests cut off by the shutdown (cancelled once SHUTDOWN_SECONDS have passed)."""
    from starlette.responses import JSONResponse

    async def serve_request(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started, status = time.perf_counter(), [0]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        host = _host(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
        try:
            if hosts is not None and host not in hosts:
                served = ", ".join(sorted(hosts))
                refusal = f"host {printable(host)!r} is not served here ({served}); start the server with --allow-host"
                await JSONResponse({"error": refusal}, status_code=400)(scope, receive, sending)
            else:
                await app(scope, receive, sending)
        except asyncio.CancelledError:  # the shutdown's bound passed: the request ends here, unanswered
            app.state.cut_off += 1
        finally:
            if access_log:
                milliseconds = (time.perf_counter() - started) * 1000
                log.info(f"{scope['method']} {printable(scope['path'])} {status[0]} {milliseconds:.0f} ms")

    return serve_request


def _host(header: str) -> str:
    """The name in a Host header, without its port ('[::1]:8000' -> '[::1]')."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header
