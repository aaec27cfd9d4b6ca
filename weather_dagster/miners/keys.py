"""sr25519 identities and the fiber signed-header scheme (see PROTOCOL-NOTES.md).

The validator signs with its hotkey, loaded from a Bittensor wallet hotkey file (plain JSON with
``secretSeed`` / ``secretPhrase`` / ``ss58Address``; encrypted keyfiles are refused with a clear
message) or from a hex seed in settings (demos and tests). Secrets never leave this module: callers
get a :class:`Keypair` and the ss58 address, and errors never quote the file contents.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import time
from pathlib import Path

from substrateinterface import Keypair

from weather_dagster.settings import Settings

NONCE_ALPHABET = string.ascii_letters + string.digits
NONCE_MAX_SKEW_NS = 120 * 1_000_000_000


class KeyLoadError(ValueError):
    """The validator hotkey could not be loaded (the message never contains key material)."""


def keypair_from_seed(seed_hex: str) -> Keypair:
    seed = seed_hex.removeprefix("0x")
    if len(seed) != 64:
        raise KeyLoadError("hotkey seed must be 32 bytes of hex")
    try:
        return Keypair.create_from_seed(seed)
    except Exception:
        raise KeyLoadError("hotkey seed is not valid hex") from None


def derived_seed(*parts: object) -> str:
    """A deterministic 32-byte hex seed, for demo identities only (never for a real validator)."""
    return hashlib.sha256("|".join(map(str, ("weather-dagster-demo", *parts))).encode()).hexdigest()


def keypair_from_wallet_file(path: Path) -> Keypair:
    """Load a Bittensor wallet hotkey file (JSON: secretSeed, secretPhrase, ss58Address)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read hotkey file {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise KeyLoadError(f"hotkey file {path} is not plain JSON (encrypted keyfiles are not supported)") from None
    if not isinstance(data, dict):
        raise KeyLoadError(f"hotkey file {path} is not a JSON object")
    if data.get("secretSeed"):
        keypair = keypair_from_seed(str(data["secretSeed"]))
    elif data.get("secretPhrase"):
        try:
            keypair = Keypair.create_from_mnemonic(str(data["secretPhrase"]))
        except Exception:
            raise KeyLoadError(f"hotkey file {path}: secretPhrase is not a valid mnemonic") from None
    else:
        raise KeyLoadError(f"hotkey file {path} has neither secretSeed nor secretPhrase")
    expected = data.get("ss58Address")
    if expected and expected != keypair.ss58_address:
        raise KeyLoadError(f"hotkey file {path}: secret does not match its ss58Address")
    return keypair


def validator_keypair(settings: Settings) -> Keypair:
    """The validator hotkey named by settings: a wallet file first, else the seed."""
    miners = settings.miners
    if miners.hotkey_file is not None:
        return keypair_from_wallet_file(miners.hotkey_file)
    if miners.hotkey_seed:
        return keypair_from_seed(miners.hotkey_seed)
    raise KeyLoadError("no validator hotkey: set WEATHER_MINERS__HOTKEY_FILE (or HOTKEY_SEED for demos)")


def write_wallet_file(path: Path, keypair: Keypair, seed_hex: str) -> None:
    """Write a plain hotkey file in the wallet layout (demo identities)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "secretSeed": "0x" + seed_hex.removeprefix("0x"),
        "publicKey": "0x" + keypair.public_key.hex(),
        "accountId": "0x" + keypair.public_key.hex(),
        "ss58Address": keypair.ss58_address,
    }
    path.write_text(json.dumps(body))
    path.chmod(0o600)


def make_nonce(now_ns: int | None = None) -> str:
    suffix = "".join(secrets.choice(NONCE_ALPHABET) for _ in range(10))
    return f"{now_ns if now_ns is not None else time.time_ns()}_{suffix}"


def signing_message(nonce: str, miner_hotkey: str, key_uuid: str) -> str:
    return f"{nonce}:{miner_hotkey}:{key_uuid}"


def signed_headers(keypair: Keypair, miner_hotkey: str, key_uuid: str) -> dict[str, str]:
    """The five fiber headers; a fresh nonce each call, so a captured request cannot be replayed."""
    nonce = make_nonce()
    signature = keypair.sign(signing_message(nonce, miner_hotkey, key_uuid))
    return {
        "validator-hotkey": keypair.ss58_address,
        "miner-hotkey": miner_hotkey,
        "symmetric-key-uuid": key_uuid,
        "nonce": nonce,
        "signature": "0x" + signature.hex(),
    }


def verify_signature(ss58_address: str, message: str | bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is ``ss58_address``'s sr25519 signature of ``message``."""
    try:
        signature = bytes.fromhex(signature_hex.removeprefix("0x"))
        return bool(Keypair(ss58_address=ss58_address).verify(message, signature))
    except Exception:
        return False


def nonce_is_fresh(nonce: str, now_ns: int | None = None) -> bool:
    head, _, _ = nonce.partition("_")
    if not head.isdigit():
        return False
    return abs((now_ns if now_ns is not None else time.time_ns()) - int(head)) <= NONCE_MAX_SKEW_NS
