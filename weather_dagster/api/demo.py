"""The demo's last word: where the page is, and (``--serve``) serving it until Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable

from weather_dagster.api.app import page_url
from weather_dagster.api.app import serve as serve_api
from weather_dagster.settings import load_settings


def show_page(database_url: str, *, serve: bool, stop: Callable[[], None]) -> None:
    """Print the page's URL; with ``serve``, stop the demo's servers (the round is over) and serve it."""
    settings = load_settings(database_url=database_url)
    if not serve:
        url = page_url(settings.api.host, settings.api.port)
        print(f"[demo] API and page: {url} (run 'make demo DEMO_ARGS=--serve' to browse this round)", flush=True)
        return
    stop()
    serve_api(settings)
