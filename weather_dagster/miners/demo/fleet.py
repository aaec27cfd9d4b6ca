"""The demo miner fleet: N miners on loopback ports in one process, speaking the fiber scheme server-side.

Each miner (``miner.py``) has its own sr25519 hotkey and JWT secret; the fleet shares one RSA key (a
demo economy: RSA generation is slow and the key only wraps per-validator symmetric keys). Requests
are counted across the whole fleet so tests can assert the validator never exceeds its in-flight limit.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.forecast import FieldCache
from weather_dagster.miners.demo.miner import DemoMiner, Job
from weather_dagster.miners.keys import derived_seed, keypair_from_seed
from weather_dagster.reference.grid import Grid

__all__ = ["HOST", "DemoFleet", "DemoMiner", "FleetConfig", "Job", "free_port"]

HOST = "127.0.0.1"


@dataclass
class FleetConfig:
    count: int
    grid_deg: float = 1.5
    steps: int = 40
    step_hours: int = 6
    behaviours: dict[int, Behaviour] = field(default_factory=dict)
    skills: dict[int, float] = field(default_factory=dict)
    default_skill: float = 0.8
    ready_after_s: float = 0.2
    slow_delay_s: float = 0.5
    late_after_s: float = 3600.0  # or until DemoFleet.release_late()
    drip_interval_s: float = 0.25
    oversized_metadata_bytes: int = 8 * 1024 * 1024
    base_port: int = 0
    fleet_seed: str = "fleet"
    file_cache_dir: Path | None = None  # benchmarks: serve generated chunks from disk (see ForecastStore)
    bomb_bytes: int = 1 << 30  # what the hostile miners' bombs decompress to (demo/hostile.py)
    layouts: dict[int, str] = field(default_factory=dict)  # uid -> store layout (demo/layouts.py)
    noise_uids: dict[int, int] = field(default_factory=dict)  # uid -> whose error pattern it serves


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class DemoFleet:
    """N demo miners in one process; ``start()`` serves them from a background thread."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self.rsa_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.impostor = keypair_from_seed(derived_seed(config.fleet_seed, "impostor"))
        self.field_cache = FieldCache(Grid(config.grid_deg))
        self.miners = [
            DemoMiner(
                self,
                uid,
                config.behaviours.get(uid, Behaviour.GOOD),
                config.skills.get(uid, config.default_skill),
            )
            for uid in range(config.count)
        ]
        self.late_released = False
        self.shared_jobs: set[str] = set()  # uid 0's jobs already answered by a DUPLICATE_JOB miner
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    @web.middleware
    async def counting_middleware(self, request: web.Request, handler):
        self.in_flight += 1
        self.requests += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def first_job(self, init_time: datetime, wait_s: float = 2.0) -> tuple[str, Job] | None:
        """uid 0's job for ``init_time`` (waiting a little for it): what a miner behind two uids answers."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for job_id, job in list(self.miners[0].jobs.items()):
                if job.init_time == init_time and job_id not in self.shared_jobs:  # one per round
                    self.shared_jobs.add(job_id)
                    await asyncio.sleep(0.2)  # answered after uid 0 did, as the second uid of one process
                    return job_id, job
            await asyncio.sleep(0.05)
        return None

    def release_late(self) -> None:
        """Let the late miners finish now (tests: after the validator's freeze window closed)."""
        self.late_released = True

    def issued_tokens(self) -> list[str]:
        return [token for miner in self.miners for token in miner.issued_tokens]

    def metagraph(self) -> dict:
        return {
            "miners": [
                {
                    "uid": m.uid,
                    "hotkey": m.keypair.ss58_address,
                    "coldkey": m.keypair.ss58_address,
                    "ip": HOST,
                    "port": m.port,
                    "stake": 0.0,
                }
                for m in self.miners
            ]
        }

    def write_metagraph(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.metagraph(), indent=1))
        return path

    async def serve(self) -> None:
        """Bind every miner (offline ones get a port nobody listens on) and serve until stopped."""
        self._stop = asyncio.Event()
        for index, miner in enumerate(self.miners):
            port = self.config.base_port + index if self.config.base_port else 0
            if miner.behaviour is Behaviour.OFFLINE:
                miner.port = port or free_port()
                continue
            runner = web.AppRunner(miner.app(), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, HOST, port, backlog=512)
            await site.start()
            miner.port = site._server.sockets[0].getsockname()[1]
            self._runners.append(runner)
        self._ready.set()
        await self._stop.wait()
        for runner in self._runners:
            await runner.cleanup()

    def start(self) -> DemoFleet:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="demo-fleet", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("demo fleet did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._stop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def __enter__(self) -> DemoFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
