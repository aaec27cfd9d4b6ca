"""The Starlette application: read-only JSON endpoints, the OpenAPI schema and the static page.

Endpoints are plain functions (Starlette runs them in its thread pool) over a read-only engine. Any
failure the client did not cause is answered with a bare 500: a database error's text would name
the server, the database and perhaps its user, so it is logged here and never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from weather_dagster.api import queries
from weather_dagster.api.limits import BodyLimit, RateLimit, TokenBuckets
from weather_dagster.api.openapi import openapi_schema
from weather_dagster.api.pagination import BadRequest, PageRequest, page_request
from weather_dagster.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger(__name__)


class NotFound(LookupError):
    pass


def _version() -> str:
    try:
        return metadata.version("weather-dagster")
    except metadata.PackageNotFoundError:
        return "0"


def _int(request: Request, name: str) -> int:
    text = request.path_params[name]
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name}: must be an integer") from None


def create_app(
    settings: Settings, engine: sa.Engine | None = None, *, buckets: TokenBuckets | None = None
) -> Starlette:
    """The whole app for ``settings``; ``engine`` (read-only) defaults to one on the product database."""
    api = settings.api
    engine = engine if engine is not None else queries.read_only_engine(settings.resolved_database_url)
    schema = openapi_schema(_version())

    def page(request: Request, types: tuple[type, ...] = (int,)) -> PageRequest:
        return page_request(request.query_params, types, api.default_page_size, api.max_page_size)

    def endpoint(read: Callable[[sa.Connection, Request], Any]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            try:
                with engine.connect() as conn:
                    body = read(conn, request)
            except BadRequest as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except NotFound as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except sa.exc.SQLAlchemyError:
                log.exception("API read failed: %s", request.url.path)
                return JSONResponse({"error": "internal error"}, status_code=500)
            return JSONResponse(body, headers={"cache-control": "no-store"})

        return handle

    def found(value: Any, what: str) -> Any:
        if value is None:
            raise NotFound(f"{what} not found")
        return value

    def known_round(conn: sa.Connection, request: Request) -> int:
        run_id = _int(request, "run_id")
        found(queries.one_round(conn, run_id), f"round {run_id}")
        return run_id

    def rounds(conn, request):
        return queries.rounds(conn, page(request))

    def one_round(conn, request):
        run_id = _int(request, "run_id")
        return found(queries.one_round(conn, run_id), f"round {run_id}")

    def round_miners(conn, request):
        run_id = known_round(conn, request)
        return queries.round_miners(conn, run_id, page(request, (int, str)))

    def timeline(conn, request):
        run_id = known_round(conn, request)
        return queries.timeline(conn, run_id, _int(request, "uid"), page(request))

    def scores(conn, request):
        run_id = known_round(conn, request)
        return queries.scores(conn, run_id, _int(request, "uid"), page(request))

    def round_snapshot(conn, request):
        run_id = _int(request, "run_id")
        return found(queries.snapshot(conn, run_id), f"snapshot of round {run_id}")

    def latest_snapshot(conn, request):
        return found(queries.snapshot(conn, None), "snapshot")

    def weight_sets(conn, request):
        return queries.weight_set_list(conn, page(request))

    def weight_set(conn, request):
        text = request.path_params["set_id"]
        set_id = found(queries.latest_weight_set(conn), "weight set") if text == "latest" else _int(request, "set_id")
        return found(queries.weight_values(conn, set_id, page(request)), f"weight set {set_id}")

    def receipts_table(conn) -> None:
        if not queries.has_receipts(conn):
            raise NotFound("receipts are not recorded by this validator's database")

    def miner_receipts(conn, request):
        run_id = known_round(conn, request)
        receipts_table(conn)
        return queries.miner_receipts(conn, run_id, _int(request, "uid"), page(request))

    def one_receipt(conn, request):
        receipts_table(conn)
        receipt_id = _int(request, "receipt_id")
        return found(queries.one_receipt(conn, receipt_id), f"receipt {receipt_id}")

    def health(conn, request):
        conn.execute(sa.select(1))
        return {"status": "ok"}

    def openapi(request: Request) -> Response:
        return JSONResponse(schema)

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    def get(path: str, read) -> Route:
        return Route(path, endpoint(read), methods=["GET"])

    routes = [
        get("/api/v1/rounds", rounds),
        get("/api/v1/rounds/{run_id}", one_round),
        get("/api/v1/rounds/{run_id}/miners", round_miners),
        get("/api/v1/rounds/{run_id}/miners/{uid}/timeline", timeline),
        get("/api/v1/rounds/{run_id}/miners/{uid}/scores", scores),
        get("/api/v1/rounds/{run_id}/miners/{uid}/receipts", miner_receipts),
        get("/api/v1/rounds/{run_id}/snapshot", round_snapshot),
        get("/api/v1/receipts/{receipt_id}", one_receipt),
        get("/api/v1/snapshot", latest_snapshot),
        get("/api/v1/weights", weight_sets),
        get("/api/v1/weights/{set_id}", weight_set),
        get("/healthz", health),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/", index, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status >= 500:
            log.error("API error on %s: %s", request.url.path, type(exc).__name__)
        message = {404: "not found", 405: "method not allowed"}.get(
            status, "internal error" if status >= 500 else "error"
        )
        return JSONResponse({"error": message}, status_code=status)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: http_error})
    app.state.engine = engine
    limits = buckets or TokenBuckets(api.rate_limit_per_s, api.rate_limit_burst, api.rate_limit_clients)
    # Outermost first: a rate-limited client costs no body reading, an oversized body no route lookup.
    app.add_middleware(BodyLimit, max_bytes=api.max_request_bytes)
    app.add_middleware(RateLimit, buckets=limits)
    return app


def page_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(settings: Settings, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM, handled by uvicorn); bound to ``settings.api.host``.

    The socket is bound here, before uvicorn starts, so the URL printed is the real one (port 0 too).
    """
    import socket

    import uvicorn

    host = settings.api.host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, settings.api.port))
    url = page_url(host, sock.getsockname()[1])
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
    print(f"weather-dagster API and page: {url} (OpenAPI: {url}openapi.json); Ctrl-C stops it", flush=True)
    if on_ready is not None:
        on_ready(url)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn shut down cleanly, then re-raised the Ctrl-C it had captured: stopping is the intent
    finally:
        sock.close()
        app.state.engine.dispose()
