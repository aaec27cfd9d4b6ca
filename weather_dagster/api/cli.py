"""``weather-dagster api serve``: the read-only API and page on the product database."""

from __future__ import annotations

import argparse

from weather_dagster.settings import load_settings


def _serve(args: argparse.Namespace) -> int:
    from weather_dagster.api.app import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings()
    if overrides:
        settings = load_settings(api={**settings.api.model_dump(), **overrides})
    serve(settings)
    return 0


def add_api_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("api", help="the read-only HTTP API and page (WEATHER_API__*, database from settings)")
    actions = parser.add_subparsers(dest="action", required=True)
    serve = actions.add_parser("serve", help="serve until Ctrl-C (default http://127.0.0.1:8090/)")
    serve.add_argument("--host", help="listen address (default WEATHER_API__HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default WEATHER_API__PORT, 8090; 0 picks a free one)")
    serve.set_defaults(handler=_serve)
