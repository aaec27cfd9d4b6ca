"""Pure conversions between the SDK's chain objects and the validator's own (no network, no SDK import).

Mirrors the reference validator (Gaia 2.9.96, ``weights/set_weights.py`` through fiber):
1. active validators (validator permit and weights set within ``active_validator_blocks``) get no
   weight, except the burn uid;
2. the weights are aligned to the uids registered now (a uid no longer on the subnet gets nothing),
   clamped at 0; nothing positive left: everything to the fallback uid, when registered;
3. normalised to sum 1 over a 256-slot vector, then quantised as fiber and the SDK do before the
   extrinsic: scaled so the largest weight is ``U16_MAX``, rounded, zero entries dropped.
The rate-limit rule is fiber's: a set is allowed once more than ``WeightsSetRateLimit`` blocks have
passed since the validator's ``LastUpdate``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from weather_dagster.miners.metagraph import MinerInfo

U16_MAX = 65_535
WEIGHT_VEC_LEN = 256
RAO_PER_UNIT = 1e9


@dataclass(frozen=True)
class Neuron:
    """What the validator keeps of one SDK neuron (``bittensor.reads.Neuron``, from ``neurons_lite``)."""

    info: MinerInfo
    last_update: int


def axon_endpoint(axon: Mapping[str, Any] | None) -> tuple[str, int]:
    """The runtime API's ``axon_info`` (ip as an integer, ``ip_type`` 4 or 6) as (text ip, port).

    An axon never served has ip 0: that stays ``("", 0)``, which ``valid_address`` treats as no address.
    """
    if not axon:
        return "", 0
    raw_ip, port = axon.get("ip") or 0, int(axon.get("port") or 0)
    if isinstance(raw_ip, str):
        return raw_ip, port
    if not int(raw_ip):
        return "", port
    family = ipaddress.IPv6Address if int(axon.get("ip_type") or 4) == 6 else ipaddress.IPv4Address
    return str(family(int(raw_ip))), port


def neuron_from_sdk(neuron: Any) -> Neuron:
    """One SDK neuron (``bittensor.reads.Neuron``) -> our record; stake in the subnet's own token."""
    ip, port = axon_endpoint((neuron.raw or {}).get("axon_info"))
    info = MinerInfo(
        uid=int(neuron.uid),
        hotkey=str(neuron.hotkey),
        coldkey=str(neuron.coldkey or ""),
        ip=ip,
        port=port,
        stake=int(neuron.total_stake.rao) / RAO_PER_UNIT,
        validator_permit=bool(neuron.validator_permit),
    )
    return Neuron(info, int(neuron.last_update or 0))


def neurons_from_sdk(neurons: Iterable[Any], max_miners: int = WEIGHT_VEC_LEN) -> list[Neuron]:
    """All neurons of the subnet, by uid (a uid listed twice is a broken read, not a choice to make)."""
    out = sorted((neuron_from_sdk(n) for n in neurons), key=lambda n: n.info.uid)
    uids = [n.info.uid for n in out]
    if len(uids) != len(set(uids)):
        raise ValueError("the chain returned a uid twice")
    return out[:max_miners]


def active_validators(neurons: Iterable[Neuron], current_block: int, recent_blocks: int) -> set[int]:
    """Permit holders that set weights recently: the reference zeroes their weight."""
    return {n.info.uid for n in neurons if n.info.validator_permit and current_block - n.last_update < recent_blocks}


@dataclass(frozen=True)
class ChainWeights:
    uids: list[int]
    weights_u16: list[int]
    fallback: bool
    zeroed_validators: list[int]


def quantise_u16(uids: list[int], weights: list[float]) -> tuple[list[int], list[int]]:
    """Max-scaled to ``U16_MAX`` and rounded; zero entries dropped (what the extrinsic carries)."""
    if len(uids) != len(weights) or any(u < 0 for u in uids) or any(w < 0 for w in weights):
        raise ValueError("uids and weights must have equal length and be non-negative")
    top = max(weights, default=0.0)
    if top <= 0:
        return [], []
    pairs = [(uid, round(w * U16_MAX / top)) for uid, w in zip(uids, weights, strict=True)]
    kept = [(uid, w) for uid, w in pairs if w > 0]
    return [u for u, _ in kept], [w for _, w in kept]


def chain_weights(
    weights: Mapping[int, float],
    registered_uids: Iterable[int],
    *,
    zero_uids: Iterable[int] = (),
    exempt_uid: int | None = None,
    fallback_uid: int,
) -> ChainWeights:
    """The weight vector (uid -> weight) as the extrinsic's uids and u16 weights."""
    registered = sorted(set(registered_uids))
    zeroed = sorted(uid for uid in set(zero_uids) if uid != exempt_uid and weights.get(uid, 0.0) > 0)
    adjusted = {uid: max(0.0, float(weights.get(uid, 0.0))) for uid in registered}
    for uid in zeroed:
        adjusted[uid] = 0.0
    fallback = not any(v > 0 for v in adjusted.values())
    if fallback:
        adjusted = {uid: (1.0 if uid == fallback_uid else 0.0) for uid in registered}
    total = sum(adjusted.values())
    vec = [0.0] * WEIGHT_VEC_LEN
    for uid, value in adjusted.items():
        if 0 <= uid < WEIGHT_VEC_LEN and total > 0:
            vec[uid] = value / total
    uids, u16 = quantise_u16(list(range(WEIGHT_VEC_LEN)), vec)
    return ChainWeights(uids, u16, fallback, zeroed)


@dataclass(frozen=True)
class RateLimit:
    allowed: bool
    blocks_since_update: int
    rate_limit_blocks: int

    @property
    def blocks_to_wait(self) -> int:
        return 0 if self.allowed else self.rate_limit_blocks - self.blocks_since_update + 1


def rate_limit(current_block: int, last_update: int, rate_limit_blocks: int) -> RateLimit:
    since = current_block - last_update
    return RateLimit(since > rate_limit_blocks, since, rate_limit_blocks)
