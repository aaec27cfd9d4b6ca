"""An async client for the subnet's encrypted "fiber" transport (SPEC section 6, PROTOCOL-NOTES.md).

One :class:`FiberClient` serves a whole batch of miners: it shares one connection pool, limits the
number of requests in flight with one semaphore (``settings.miners.http_concurrency``), and keeps a
per-miner symmetric key for ``symmetric_key_ttl_s`` (2 h). A key is dropped and re-made once when a
call fails on transport or the miner answers "No symmetric key found". Keys and tokens live only in
memory, never in logs, errors or tables.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError
from substrateinterface import Keypair

from weather_dagster.core.errors import InvalidDataError, SourceError
from weather_dagster.core.tls import shared_tls_context
from weather_dagster.miners import protocol
from weather_dagster.miners.decoding import load_json
from weather_dagster.miners.keys import make_nonce, signed_headers
from weather_dagster.miners.perimeter import BoundedResponse, bounded_request, miner_base_url, raise_for_status
from weather_dagster.settings import Settings

MAX_RSA_BITS = 8192


@dataclass(frozen=True)
class MinerAddress:
    uid: int
    hotkey: str
    ip: str
    port: int


@dataclass
class SymmetricKey:
    uuid: str
    fernet: Fernet = field(repr=False)
    made_at: float  # time.monotonic()


class MinerProtocolError(SourceError):
    """The miner answered something the protocol does not allow (retried: it may be a blip)."""


class FiberClient:
    def __init__(self, settings: Settings, keypair: Keypair, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.keypair = keypair
        self._own_http = http is None
        limits = httpx.Limits(max_connections=settings.miners.http_concurrency, max_keepalive_connections=64)
        self.http = http or httpx.AsyncClient(
            limits=limits, trust_env=False, follow_redirects=False, verify=shared_tls_context()
        )
        self.in_flight = asyncio.Semaphore(settings.miners.http_concurrency)
        self._keys: dict[tuple[str, str], SymmetricKey] = {}
        self._key_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def __aenter__(self) -> FiberClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # -- raw requests --------------------------------------------------------------------------------

    async def request(
        self, method: str, url: str, *, timeout_s: float, max_bytes: int | None = None, **kwargs: Any
    ) -> BoundedResponse:
        """One bounded request, counted against the in-flight limit."""
        async with self.in_flight:
            return await bounded_request(
                self.http,
                method,
                url,
                max_bytes=max_bytes or self.settings.miners.max_response_bytes,
                deadline_s=self.settings.miners.read_deadline_s,
                timeout_s=timeout_s,
                **kwargs,
            )

    def _base(self, miner: MinerAddress) -> str:
        return miner_base_url(miner.ip, miner.port, self.settings)

    # -- handshake -----------------------------------------------------------------------------------

    async def _handshake(self, miner: MinerAddress, timeout_s: float) -> SymmetricKey:
        base = self._base(miner)
        answer = await self.request("GET", base + protocol.PUBLIC_KEY_PATH, timeout_s=timeout_s)
        raise_for_status(answer, "public key")
        try:
            pem = load_json(answer.body, "public key answer")["public_key"]
            public_key = serialization.load_pem_public_key(pem.encode())
        except InvalidDataError:
            raise
        except Exception:
            raise MinerProtocolError(base, "public key answer is not a PEM public key") from None
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size > MAX_RSA_BITS:
            raise MinerProtocolError(base, "miner public key is not an RSA key of acceptable size")
        raw_key = os.urandom(32)
        key_uuid = secrets.token_hex(32)
        encrypted = public_key.encrypt(
            raw_key,
            padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        headers = signed_headers(self.keypair, miner.hotkey, key_uuid)
        answer = await self.request(
            "POST",
            base + protocol.EXCHANGE_KEY_PATH,
            timeout_s=timeout_s,
            json={"encrypted_symmetric_key": base64.b64encode(encrypted).decode()},
            headers=headers,
        )
        raise_for_status(answer, "symmetric key exchange")
        return SymmetricKey(key_uuid, Fernet(base64.urlsafe_b64encode(raw_key)), time.monotonic())

    async def _key(self, miner: MinerAddress, timeout_s: float, *, renew: bool = False) -> SymmetricKey:
        cache_key = (self._base(miner), miner.hotkey)
        lock = self._key_locks.setdefault(cache_key, asyncio.Lock())
        async with lock:
            current = self._keys.get(cache_key)
            fresh = current and time.monotonic() - current.made_at < self.settings.miners.symmetric_key_ttl_s
            if renew or not fresh:
                self._keys.pop(cache_key, None)
                current = await self._handshake(miner, timeout_s)
                self._keys[cache_key] = current
            return current

    def forget_key(self, miner: MinerAddress) -> None:
        self._keys.pop((self._base(miner), miner.hotkey), None)

    def cached_key_count(self) -> int:
        return len(self._keys)

    # -- encrypted calls -----------------------------------------------------------------------------

    async def call(self, miner: MinerAddress, path: str, payload: dict, *, timeout_s: float) -> dict:
        """POST an encrypted payload and return the JSON answer; re-handshakes once when told to."""
        key = await self._key(miner, timeout_s)
        try:
            return await self._call_once(miner, key, path, payload, timeout_s)
        except (httpx.TransportError, _NoSymmetricKey):
            key = await self._key(miner, timeout_s, renew=True)
        try:
            return await self._call_once(miner, key, path, payload, timeout_s)
        except _NoSymmetricKey:
            self.forget_key(miner)
            raise MinerProtocolError(self._base(miner) + path, "miner lost the symmetric key twice") from None

    async def _call_once(
        self, miner: MinerAddress, key: SymmetricKey, path: str, payload: dict, timeout_s: float
    ) -> dict:
        body = key.fernet.encrypt(json.dumps({**payload, "nonce": make_nonce()}).encode())
        headers = {**signed_headers(self.keypair, miner.hotkey, key.uuid), "content-type": "application/octet-stream"}
        url = self._base(miner) + path
        answer = await self.request("POST", url, timeout_s=timeout_s, content=body, headers=headers)
        if answer.status_code >= 400 and protocol.NO_SYMMETRIC_KEY.encode() in answer.body[:4096]:
            raise _NoSymmetricKey()
        raise_for_status(answer, path)
        try:
            data = load_json(answer.body, f"{path} answer")
        except ValueError:
            raise MinerProtocolError(url, "answer is not JSON") from None
        if not isinstance(data, dict):
            raise MinerProtocolError(url, "answer is not a JSON object")
        return data

    async def initiate_fetch(self, miner: MinerAddress, payload: dict, timeout_s: float):
        data = await self.call(miner, protocol.INITIATE_FETCH_PATH, payload, timeout_s=timeout_s)
        return _parse(protocol.InitiateFetchResponse, data, "initiate-fetch")

    async def poll(self, miner: MinerAddress, job_id: str, timeout_s: float):
        data = await self.call(miner, protocol.POLL_STATUS_PATH, protocol.job_payload(job_id), timeout_s=timeout_s)
        return _parse(protocol.PollResponse, data, "poll")

    async def kerchunk(self, miner: MinerAddress, job_id: str, timeout_s: float):
        data = await self.call(miner, protocol.KERCHUNK_PATH, protocol.job_payload(job_id), timeout_s=timeout_s)
        return _parse(protocol.KerchunkResponse, data, "kerchunk-request")

    async def get_store_file(self, store_root: str, key: str, token: str, *, max_bytes: int, timeout_s: float) -> bytes:
        """A JWT-authorized read of one file under the store root (already perimeter-checked)."""
        answer = await self.request(
            "GET",
            store_root + key,
            timeout_s=timeout_s,
            max_bytes=max_bytes,
            headers={"authorization": f"Bearer {token}"},
        )
        raise_for_status(answer, f"store file {key}")
        return answer.body


class _NoSymmetricKey(Exception):
    pass


def _parse(model: type, data: dict, what: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        raise InvalidDataError(f"{what} answer has invalid fields: {', '.join(fields)[:200]}") from None
