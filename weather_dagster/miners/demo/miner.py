"""One demo miner: the fiber handshake server-side, the subnet's endpoints and its JWT-protected store.

Every misbehaviour of ``Behaviour`` is decided here, per request; the fleet (``fleet.py``) only owns
what the miners share (the RSA key, the field cache, the request counters) and the serving thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from substrateinterface import Keypair

from weather_dagster.miners import protocol
from weather_dagster.miners.demo import faulty_http, hostile, tokens
from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.forecast import ForecastStore
from weather_dagster.miners.keys import (
    derived_seed,
    keypair_from_seed,
    nonce_is_fresh,
    signing_message,
    verify_signature,
)
from weather_dagster.miners.manifest import MANIFEST_KEY, SIGNATURE_KEY, manifest_hash
from weather_dagster.reference.grid import Grid

# Behaviours that serve a store file's bytes as they are: those may go out with sendfile.
PLAIN_TRANSPORT = frozenset(Behaviour) - {Behaviour.SLOW_DRIP, Behaviour.STORE_RESETS, *hostile.HTTP_ENCODINGS}

if TYPE_CHECKING:
    from weather_dagster.miners.demo.fleet import DemoFleet


@dataclass
class Job:
    init_time: datetime
    started: float
    store: ForecastStore
    kerchunk_requests: int = 0
    manifest: bytes | None = None
    signature: bytes | None = None
    manifest_served: bool = False


class DemoMiner:
    def __init__(self, fleet: DemoFleet, uid: int, behaviour: Behaviour, skill: float) -> None:
        self.fleet, self.uid, self.behaviour, self.skill = fleet, uid, behaviour, skill
        self.keypair: Keypair = keypair_from_seed(derived_seed(fleet.config.fleet_seed, "miner", uid))
        self.jwt_secret = hashlib.sha256(derived_seed(fleet.config.fleet_seed, "jwt", uid).encode()).digest()
        self.keys: dict[str, tuple[Fernet, str]] = {}  # uuid -> (fernet, validator hotkey)
        self.seen_nonces: set[str] = set()
        self.jobs: dict[str, Job] = {}
        self.calls = 0
        self.port = 0
        self.issued_tokens: list[str] = []
        self.store_reads = 0
        self.resets = 0  # connections dropped on purpose (Behaviour.STORE_RESETS)
        self.served_keys: set[str] = set()  # store keys a validator asked for (tests: extras never read)

    # -- fiber server side -------------------------------------------------------------------------

    def _check_headers(self, request: web.Request) -> tuple[str, str]:
        h = request.headers
        validator, key_uuid, nonce = h.get("validator-hotkey", ""), h.get("symmetric-key-uuid", ""), h.get("nonce", "")
        if h.get("miner-hotkey") != self.keypair.ss58_address:
            raise web.HTTPBadRequest(text="wrong miner hotkey")
        if not nonce_is_fresh(nonce) or nonce in self.seen_nonces:
            raise web.HTTPUnauthorized(text="stale or repeated nonce")
        message = signing_message(nonce, self.keypair.ss58_address, key_uuid)
        if not verify_signature(validator, message, h.get("signature", "")):
            raise web.HTTPUnauthorized(text="bad signature")
        self.seen_nonces.add(nonce)
        return validator, key_uuid

    async def public_key(self, request: web.Request) -> web.Response:
        if self.behaviour is Behaviour.HEADER_DRIP:
            return await faulty_http.drip_headers(request, self.fleet.config.drip_interval_s)
        return web.json_response({"public_key": self.fleet.public_pem, "timestamp": time.time()})

    async def exchange(self, request: web.Request) -> web.Response:
        validator, key_uuid = self._check_headers(request)
        body = await request.json()
        encrypted = base64.b64decode(body["encrypted_symmetric_key"])
        raw = self.fleet.rsa_key.decrypt(
            encrypted, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        )
        self.keys[key_uuid] = (Fernet(base64.urlsafe_b64encode(raw)), validator)
        self.issued_tokens.append(base64.urlsafe_b64encode(raw).decode())  # secrets a test greps for
        return web.json_response({"status": "Symmetric key exchanged successfully"})

    async def _decrypt(self, request: web.Request) -> tuple[dict, str]:
        validator, key_uuid = self._check_headers(request)
        entry = self.keys.get(key_uuid)
        if entry is None or entry[1] != validator:
            raise web.HTTPBadRequest(text=json.dumps({"detail": protocol.NO_SYMMETRIC_KEY}))
        try:
            payload = json.loads(entry[0].decrypt(await request.read()))
        except (InvalidToken, ValueError):
            raise web.HTTPBadRequest(text="undecryptable body") from None
        if not nonce_is_fresh(str(payload.get("nonce", ""))):
            raise web.HTTPUnauthorized(text="stale body nonce")
        return payload, validator

    async def _encrypted_call(self, request: web.Request) -> tuple[dict, str]:
        payload, validator = await self._decrypt(request)
        self.calls += 1
        if self.behaviour is Behaviour.SLOW:
            await asyncio.sleep(self.fleet.config.slow_delay_s)
        if self.behaviour is Behaviour.FLAKY_5XX and self.calls % 2 == 1:
            raise web.HTTPInternalServerError(text="flaky")
        return payload, validator

    # -- subnet endpoints --------------------------------------------------------------------------

    async def initiate_fetch(self, request: web.Request) -> web.Response:
        payload, validator = await self._encrypted_call(request)
        data = payload.get("data", {})
        if (
            self.behaviour is Behaviour.FETCH_REJECTED
            or data.get("expected_miner_hotkey") != self.keypair.ss58_address
            or data.get("validator_hotkey") != validator
        ):
            return web.json_response({"status": protocol.FETCH_REJECTED, "job_id": None, "message": "hotkey mismatch"})
        if self.behaviour is Behaviour.DEEP_JSON:
            return web.Response(body=hostile.deep_json(), content_type="application/json")
        init_time = datetime.fromisoformat(data["forecast_start_time"])
        if self.behaviour is Behaviour.DUPLICATE_JOB and (shared := await self.fleet.first_job(init_time)):
            self.jobs[shared[0]] = shared[1]
            return web.json_response({"status": protocol.FETCH_ACCEPTED, "job_id": shared[0], "message": "accepted"})
        job_id = str(uuid.uuid4())
        cfg = self.fleet.config
        store = ForecastStore(
            Grid(cfg.grid_deg),
            init_time,
            self.uid,
            self.behaviour,
            self.skill,
            cfg.steps,
            cfg.step_hours,
            cfg.oversized_metadata_bytes,
            cache=self.fleet.field_cache,
            file_cache_dir=cfg.file_cache_dir,
            bomb_bytes=cfg.bomb_bytes,
            layout=cfg.layouts.get(self.uid, "canonical"),
            noise_uid=cfg.noise_uids.get(self.uid),
        )
        self.jobs[job_id] = Job(init_time, time.monotonic(), store)
        return web.json_response({"status": protocol.FETCH_ACCEPTED, "job_id": job_id, "message": "accepted"})

    def _job_status(self, job: Job) -> str:
        cfg = self.fleet.config
        ready_after = {Behaviour.SLOW: cfg.ready_after_s + 1.0, Behaviour.LATE: cfg.late_after_s}.get(
            self.behaviour, cfg.ready_after_s
        )
        if self.behaviour is Behaviour.LATE and self.fleet.late_released:
            return "completed"
        if self.behaviour is Behaviour.NEVER_COMPLETES or time.monotonic() - job.started < ready_after:
            return "running_inference"
        return "completed"

    async def poll(self, request: web.Request) -> web.Response:
        payload, _ = await self._encrypted_call(request)
        job_id = str(payload.get("data", {}).get("job_id"))
        job = self.jobs.get(job_id)
        if job is None:
            return web.json_response({"status": "not_found", "job_id": job_id, "message": "unknown job"})
        if self.behaviour is Behaviour.POLL_FETCH_ERROR:  # the reference miner's handler on a failed job
            return web.json_response({"error": "Internal server error: FETCH_ERROR"}, status=500)
        return web.json_response({"status": self._job_status(job), "job_id": job_id, "message": ""})

    def _sign(self, manifest: bytes) -> bytes:
        if self.behaviour is Behaviour.BAD_SIGNATURE:
            return ("0x" + self.keypair.sign(manifest + b"tampered").hex()).encode()
        if self.behaviour is Behaviour.WRONG_SIGNER:
            return ("0x" + self.fleet.impostor.sign(manifest).hex()).encode()
        return ("0x" + self.keypair.sign(manifest).hex()).encode()

    async def _prepare(self, job: Job) -> None:
        if job.manifest is None:
            signer = self.fleet.impostor if self.behaviour is Behaviour.WRONG_SIGNER else self.keypair
            manifest = await asyncio.to_thread(job.store.manifest, signer.ss58_address)
            job.manifest, job.signature = manifest, self._sign(manifest)

    def _kerchunk_not_ready(self, job: Job | None) -> tuple[str, str] | None:
        """(status, message) when this kerchunk request is not answered with a store; counts the request."""
        if job is None or self.behaviour is Behaviour.KERCHUNK_NOT_FOUND:
            return "not_found", "Job not found"
        job.kerchunk_requests += 1
        if self.behaviour is Behaviour.KERCHUNK_ERROR:
            return "error", "Inference failed"
        if self._job_status(job) != "completed" or (
            self.behaviour is Behaviour.KERCHUNK_PROCESSING and job.kerchunk_requests <= 2
        ):
            return "processing", "Job is still processing"
        return None

    async def kerchunk(self, request: web.Request) -> web.Response:
        payload, _ = await self._encrypted_call(request)
        job_id = str(payload.get("data", {}).get("job_id"))
        job = self.jobs.get(job_id)
        not_ready = self._kerchunk_not_ready(job)
        if not_ready is not None:  # the reference miner's shape: HTTP 200, a status, null URL/hash/token
            status, message = not_ready
            return web.json_response(
                {
                    "status": status,
                    "message": message,
                    "zarr_store_url": None,
                    "verification_hash": None,
                    "access_token": None,
                }
            )
        await self._prepare(job)
        if self.behaviour is Behaviour.HASH_CHANGED and job.kerchunk_requests > 1:
            job.manifest = job.store.manifest(self.keypair.ss58_address, {"revision": job.kerchunk_requests})
            job.signature = self._sign(job.manifest)
        token = tokens.issue(self.jwt_secret, job_id)
        self.issued_tokens.append(token)
        return web.json_response(
            {
                "status": "completed",
                "message": "",
                "zarr_store_url": f"/forecasts/{job_id}.zarr/",
                "verification_hash": manifest_hash(job.manifest),
                "access_token": token,
            }
        )

    # -- JWT-protected store -------------------------------------------------------------------------

    async def store_file(self, request: web.Request) -> web.StreamResponse:
        store, key = request.match_info["store"], request.match_info["key"]
        job_id = store.removesuffix(".zarr")
        authorised = tokens.subject(self.jwt_secret, request.headers.get("authorization", "")) == job_id
        if not authorised or job_id not in self.jobs:
            raise web.HTTPUnauthorized(text="invalid token")
        if self.behaviour is Behaviour.REDIRECT:
            raise web.HTTPFound(f"http://127.0.0.2:{self.port}/forecasts/{store}/{key}")
        job = self.jobs[job_id]
        self.served_keys.add(key)
        await self._prepare(job)
        if key == MANIFEST_KEY:
            job.manifest_served = True
            data = job.manifest
        elif key == SIGNATURE_KEY:
            data = job.signature
        else:
            if self.behaviour is Behaviour.CHUNK_SWAPPED and job.manifest_served and key == "2t/0.0.0":
                key = "2t/1.0.0"
            cached = job.store.cached_path(key) if self.behaviour in PLAIN_TRANSPORT else None
            if cached is not None:
                return web.FileResponse(cached, headers={"content-type": "application/octet-stream"})
            data = await asyncio.to_thread(job.store.file, key)
        if data is None:
            raise web.HTTPNotFound()
        if self.behaviour is Behaviour.SLOW_DRIP:
            return await faulty_http.drip_body(request, data, self.fleet.config.drip_interval_s)
        if self.behaviour is Behaviour.STORE_RESETS and key not in (MANIFEST_KEY, SIGNATURE_KEY):
            self.store_reads += 1
            if self.store_reads % 3 == 0:
                self.resets += 1
                return faulty_http.reset_mid_body(request, data)
        encoding = hostile.HTTP_ENCODINGS.get(self.behaviour)
        if encoding and key not in job.store.metadata and key not in (MANIFEST_KEY, SIGNATURE_KEY):
            body = await asyncio.to_thread(hostile.http_bomb, encoding, self.fleet.config.bomb_bytes)
            headers = {"content-encoding": encoding, "content-type": "application/octet-stream"}
            return web.Response(body=body, headers=headers)
        return web.Response(body=data, content_type="application/octet-stream")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.fleet.counting_middleware], client_max_size=1024 * 1024)
        app.router.add_get(protocol.PUBLIC_KEY_PATH, self.public_key)
        app.router.add_post(protocol.EXCHANGE_KEY_PATH, self.exchange)
        app.router.add_post(protocol.INITIATE_FETCH_PATH, self.initiate_fetch)
        app.router.add_post(protocol.POLL_STATUS_PATH, self.poll)
        app.router.add_post(protocol.KERCHUNK_PATH, self.kerchunk)
        app.router.add_get("/forecasts/{store}/{key:.+}", self.store_file)
        return app
