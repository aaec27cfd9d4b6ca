"""Ctrl-C and SIGTERM stop a long-running command, however it was started.

A non-interactive shell starting a command in the background (``make demo &``, ``nohup ... &``, a CI
runner) hands it SIGINT ignored, and a Python started that way never raises KeyboardInterrupt: the
command would then outlive the ``kill -INT`` meant to stop it. Commands that serve until stopped
install this handler for the time they run.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt inside the block; the previous handlers come back after."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
