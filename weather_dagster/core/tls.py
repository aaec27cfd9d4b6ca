"""One TLS context per process for every HTTP client the validator makes.

httpx builds a fresh ``SSLContext`` (loading the whole CA bundle) for each client it creates, about
30 ms of CPU, even for plain-http miners; opening one miner's forecast for one lead made two
clients. The context holds only the default verification settings (CA bundle, hostname checks),
no per-peer state, and Python's ``SSLContext`` is safe to share between threads and clients.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once (pass as ``verify=`` to every client)."""
    return httpx.create_ssl_context()
