"""The chain adapters on the SDK's own data objects (``bittensor.reads.Neuron``, ``Balance``,
``ExtrinsicResult``): conversion, the weight decisions, and the publisher's recorded attempts on
both databases. The one thing not run is the network call behind each ``BittensorChain`` method.

Needs the ``chain`` extra (``pip install -e '.[dev,chain]'``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from bittensor import Balance
from bittensor.reads import Neuron
from bittensor.result import ExtrinsicResult

from weather_dagster.chain.client import BittensorChain, _outcome
from weather_dagster.chain.convert import (
    U16_MAX,
    active_validators,
    chain_weights,
    neurons_from_sdk,
    quantise_u16,
    rate_limit,
)
from weather_dagster.chain.dagster_defs import chain_definitions, refresh_cron
from weather_dagster.chain.metagraph import ChainMetagraph, refresh_miners_table
from weather_dagster.chain.publisher import ChainPublishFailed, ChainWeightPublisher
from weather_dagster.core.retry import RetryPolicy, WorkKind
from weather_dagster.db.schema import weight_sets, weight_submissions
from weather_dagster.miners.metagraph import registered
from weather_dagster.settings import ChainSettings, Settings
from weather_dagster.stats.weights import WeightVector

NETUID = 237
OWN_HOTKEY = "5Validator"
WHEN = datetime(2026, 11, 20, 0, tzinfo=UTC)


def sdk_neuron(uid: int, hotkey: str, *, ip: str = "", port: int = 0, permit=False, last_update=0, stake_rao=0):
    """A neuron exactly as ``Subtensor.neurons.neurons(lite=True)`` returns it (runtime-API record in raw)."""
    version = 6 if ":" in ip else 4
    axon = {"block": 1, "version": 1, "ip": int(ipaddress.ip_address(ip)) if ip else 0, "port": port}
    axon.update(ip_type=version, protocol=4, placeholder1=0, placeholder2=0)
    return Neuron(
        uid=uid,
        hotkey=hotkey,
        coldkey=f"cold{uid % 3}",
        active=True,
        validator_permit=permit,
        last_update=last_update,
        total_stake=Balance.from_rao(stake_rao, NETUID),
        raw={"uid": uid, "hotkey": hotkey, "axon_info": axon, "stake": [(f"cold{uid % 3}", stake_rao)]},
    )


def subnet(block: int = 10_000, own_last_update: int = 9_000) -> list[Neuron]:
    return [
        sdk_neuron(0, OWN_HOTKEY, permit=True, last_update=own_last_update, stake_rao=5 * 10**12),
        sdk_neuron(1, "5Miner1", ip="203.0.113.7", port=8091, last_update=100, stake_rao=2 * 10**9),
        sdk_neuron(2, "5Miner2", ip="2001:db8::5", port=443),
        sdk_neuron(3, "5OtherValidator", permit=True, last_update=block - 10),
        sdk_neuron(4, "5StaleValidator", permit=True, last_update=block - 5000, ip="198.51.100.1", port=1),
        sdk_neuron(252, "5Fallback", ip="198.51.100.2", port=9000),
    ]


def test_neurons_convert_from_the_sdk_records() -> None:
    neurons = neurons_from_sdk(reversed(subnet()))
    by_uid = {n.info.uid: n.info for n in neurons}
    assert [n.info.uid for n in neurons] == [0, 1, 2, 3, 4, 252]
    assert (by_uid[1].ip, by_uid[1].port, by_uid[1].stake) == ("203.0.113.7", 8091, 2.0)
    assert (by_uid[2].ip, by_uid[2].port) == ("2001:db8::5", 443)
    assert (by_uid[3].ip, by_uid[3].port) == ("", 0)  # never served: no address, so no weight
    assert by_uid[0].validator_permit and not by_uid[1].validator_permit
    assert by_uid[0].stake == 5000.0 and by_uid[1].coldkey == "cold1"
    with pytest.raises(ValueError, match="twice"):
        neurons_from_sdk([*subnet(), sdk_neuron(1, "5Dup")])


def test_active_validators_are_recent_permit_holders() -> None:
    neurons = neurons_from_sdk(subnet(block=10_000, own_last_update=9_800))
    assert active_validators(neurons, 10_000, 500) == {0, 3}  # uid 4 last set weights 5000 blocks ago


def test_chain_weights_mirror_the_reference_conversion() -> None:
    weights = {uid: 0.0 for uid in range(256)}
    weights.update({1: 0.5, 2: 0.25, 3: 0.15, 7: 0.1})  # uid 3 is an active validator, uid 7 not registered
    out = chain_weights(weights, [0, 1, 2, 3, 4, 252], zero_uids={0, 3}, exempt_uid=None, fallback_uid=252)
    assert out.uids == [1, 2]
    assert out.weights_u16 == [U16_MAX, round(U16_MAX * 0.5)]
    assert out.zeroed_validators == [3] and not out.fallback
    burn = chain_weights({3: 0.6, 1: 0.4}, [1, 3], zero_uids={3}, exempt_uid=3, fallback_uid=252)
    assert burn.uids == [1, 3] and burn.weights_u16 == [round(U16_MAX * 0.4 / 0.6), U16_MAX]


def test_nothing_positive_goes_to_the_fallback_uid_only_when_registered() -> None:
    out = chain_weights({3: 1.0}, [1, 3, 252], zero_uids={3}, fallback_uid=252)
    assert (out.uids, out.weights_u16, out.fallback) == ([252], [U16_MAX], True)
    nobody = chain_weights({}, [1, 3], fallback_uid=252)
    assert (nobody.uids, nobody.weights_u16, nobody.fallback) == ([], [], True)


def test_u16_quantisation_scales_by_the_maximum_and_drops_zeros() -> None:
    assert quantise_u16([0, 1, 2, 3], [0.2, 0.0, 0.4, 1e-9]) == ([0, 2], [32768, U16_MAX])
    with pytest.raises(ValueError):
        quantise_u16([0, 1], [0.5, -0.1])


def test_rate_limit_follows_blocks_since_last_update() -> None:
    assert rate_limit(1100, 1000, 100).allowed is False
    assert rate_limit(1100, 1000, 100).blocks_to_wait == 1
    assert rate_limit(1101, 1000, 100).allowed is True
    assert rate_limit(1040, 1000, 100).blocks_to_wait == 61


def test_extrinsic_result_becomes_the_recorded_outcome() -> None:
    assert _outcome(ExtrinsicResult(success=True, message="included")) == (True, "included")
    assert _outcome(ExtrinsicResult(success=False, message="SettingWeightsTooFast")) == (False, "SettingWeightsTooFast")


@dataclass
class FakeChain:
    """The ``ChainClient`` surface, answering with SDK objects; counts blocks per call."""

    block: int = 10_000
    own_last_update: int = 9_000
    rate_limit_blocks: int = 100
    commit_reveal: bool = False
    outcomes: list = field(default_factory=list)
    hotkey_ss58: str = OWN_HOTKEY
    sent: list = field(default_factory=list)

    def neurons(self, netuid: int) -> list[Neuron]:
        assert netuid == NETUID
        return subnet(self.block, self.own_last_update)

    def current_block(self) -> int:
        return self.block

    def weights_rate_limit(self, netuid: int) -> int:
        return self.rate_limit_blocks

    def commit_reveal_enabled(self, netuid: int) -> bool:
        return self.commit_reveal

    def set_weights(self, netuid, uids, weights, version_key):
        self.sent.append((netuid, list(uids), list(weights), version_key))
        outcome = self.outcomes.pop(0) if self.outcomes else ExtrinsicResult(success=True, message="included")
        if isinstance(outcome, Exception):
            raise outcome
        return _outcome(outcome)


def _settings(settings: Settings, **chain) -> Settings:
    return settings.model_copy(update={"chain": ChainSettings(netuid=NETUID, weights_enabled=True, **chain)})


def _vector() -> WeightVector:
    weights = {uid: 0.0 for uid in range(256)}
    weights.update({1: 0.6, 2: 0.3, 3: 0.1})
    return WeightVector(weights, dict(weights), {"window_days": 15, "burn": False, "rounds": 3})


def _rows(database) -> list:
    with database.engine.connect() as conn:
        return conn.execute(sa.select(weight_submissions).order_by(weight_submissions.c.attempt)).all()


def test_dry_run_records_what_it_would_set_and_sends_nothing(database, settings) -> None:
    chain = FakeChain(own_last_update=9_950)  # also rate-limited: dry run says so, never waits
    publisher = ChainWeightPublisher(_settings(settings, dry_run=True), database, chain, sleep=pytest.fail)
    publisher.publish(_vector(), WHEN, WHEN)
    (row,) = _rows(database)
    assert chain.sent == []
    assert (row.status, row.mode, row.uids, row.weights_u16) == ("dry_run", "dry_run", [1, 2], [U16_MAX, 32768])
    assert (row.block, row.blocks_since_update, row.rate_limit_blocks, row.version_key) == (10_000, 50, 100, 2186)
    assert "rate-limited for 51 more blocks" in row.message
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(weight_sets.c.publisher)).scalar_one() == "chain-dry-run"


def test_rate_limit_waits_then_sets_the_weights(database, settings) -> None:
    chain = FakeChain(own_last_update=9_990)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        chain.block += int(seconds / 12.0)

    ChainWeightPublisher(_settings(settings), database, chain, sleep=sleep).publish(_vector(), WHEN, WHEN)
    first, second = _rows(database)
    assert (first.status, first.blocks_since_update, first.next_attempt_at is not None) == ("rate_limited", 10, True)
    assert slept == [91 * 12.0]
    assert (second.status, second.attempt, second.message) == ("succeeded", 2, "included")
    assert chain.sent == [(NETUID, [1, 2], [U16_MAX, 32768], 2186)]


def test_commit_reveal_subnet_is_recorded_as_a_commit(database, settings) -> None:
    chain = FakeChain(commit_reveal=True)
    ChainWeightPublisher(_settings(settings), database, chain, sleep=pytest.fail).publish(_vector(), WHEN, WHEN)
    (row,) = _rows(database)
    assert (row.mode, row.status) == ("commit", "succeeded") and len(chain.sent) == 1


def test_refused_extrinsics_are_retried_with_backoff_then_fail_recorded(database, settings) -> None:
    refused = [ExtrinsicResult(success=False, message="Custom error: 7"), ConnectionResetError("ws closed")]
    chain = FakeChain(outcomes=[*refused, ExtrinsicResult(success=False, message="still no")])
    slept: list[float] = []
    s = _settings(settings, publish_max_attempts=3)
    with pytest.raises(ChainPublishFailed, match="after attempt 3"):
        ChainWeightPublisher(s, database, chain, sleep=slept.append).publish(_vector(), WHEN, WHEN)
    rows = _rows(database)
    assert [(r.attempt, r.status, r.error_class) for r in rows] == [
        (1, "failed", "server"),  # the chain refused it: retried like a server error
        (2, "failed", "connection"),
        (3, "failed", "server"),
    ]
    assert rows[0].message == "Custom error: 7" and rows[1].message == "ws closed"
    policy = RetryPolicy.from_settings(s)
    base = [policy.download_base_s * 2**i for i in range(2)]  # core/retry.py's doubling backoff, with jitter
    assert len(slept) == 2 and all(b <= x <= b * (1 + policy.download_jitter) for x, b in zip(slept, base, strict=True))
    assert policy.backoff(WorkKind.DOWNLOAD, 2) >= base[1]
    # A second materialization continues the attempt count (history kept, unique per attempt).
    chain.outcomes = []
    ChainWeightPublisher(s, database, chain, sleep=slept.append).publish(_vector(), WHEN, WHEN)
    assert [r.status for r in _rows(database)][-1] == "succeeded" and _rows(database)[-1].attempt == 4


def test_unregistered_wallet_fails_once_without_retry(database, settings) -> None:
    chain = FakeChain(hotkey_ss58="5NotOnTheSubnet")
    with pytest.raises(ChainPublishFailed):
        ChainWeightPublisher(_settings(settings), database, chain, sleep=pytest.fail).publish(_vector(), WHEN, WHEN)
    (row,) = _rows(database)
    assert (row.status, row.error_class, row.next_attempt_at) == ("failed", "invalid", None)
    assert "holds no uid" in row.message and chain.sent == []


def test_metagraph_refresh_applies_hotkey_changes_and_deregistrations(database) -> None:
    chain = FakeChain()
    metagraph = ChainMetagraph(chain, NETUID)
    counts = refresh_miners_table(database.engine, metagraph.snapshot())
    assert counts == {"upserted": 6, "removed": 0, "hotkeys_changed": 0}
    assert registered(database.engine)[0].validator_permit
    changed = [n for n in subnet() if n.uid not in (2, 252)] + [sdk_neuron(252, "5NewHotkey")]
    chain.neurons = lambda netuid: changed  # type: ignore[method-assign]
    counts = refresh_miners_table(database.engine, metagraph.snapshot())
    assert counts == {"upserted": 5, "removed": 1, "hotkeys_changed": 1}
    now = registered(database.engine)
    assert 2 not in now and now[252].hotkey == "5NewHotkey"  # the lifecycle cancels both old threads
    assert refresh_miners_table(database.engine, []) == {"upserted": 0, "removed": 0, "hotkeys_changed": 0}
    assert len(registered(database.engine)) == 5  # an empty read never deregisters everyone


def test_definitions_swap_in_the_chain_adapters_only_when_enabled(settings, database) -> None:
    assert chain_definitions(settings, database).resources == {}
    s = settings.model_copy(update={"chain": ChainSettings(metagraph_enabled=True, weights_enabled=True)})
    defs = chain_definitions(s, database)
    assert isinstance(defs.resources["metagraph"], ChainMetagraph)
    assert isinstance(defs.resources["weight_publisher"], ChainWeightPublisher)
    assert isinstance(defs.resources["metagraph"].client, BittensorChain)
    assert defs.resources["metagraph"].client._subtensor is None  # nothing connects at load time
    assert [sch.cron_schedule for sch in defs.schedules] == ["*/30 * * * *"]
    assert refresh_cron(90) == "0 */1 * * *" and refresh_cron(5) == "*/5 * * * *"


def test_round_weights_materializes_through_the_chain_publisher(database, settings) -> None:
    """A real ``round_weights`` materialization: miners from the chain snapshot, round scores in the
    window, the weights recorded in the database and the chain attempt recorded beside them."""
    from dagster import DagsterInstance, materialize

    from weather_dagster.dagster_defs.statistics import round_weights
    from weather_dagster.db.schema import round_scores
    from weather_dagster_tests.support.helpers import make_round

    chain = FakeChain()
    refresh_miners_table(database.engine, ChainMetagraph(chain, NETUID).snapshot())
    run_id = make_round(database.engine, WHEN - timedelta(days=1))
    with database.engine.begin() as conn:
        for uid, hotkey, score in [(1, "5Miner1", 0.8), (2, "5Miner2", 0.4), (3, "5OtherValidator", 0.9)]:
            conn.execute(
                sa.insert(round_scores).values(
                    run_id=run_id, miner_uid=uid, miner_hotkey=hotkey, score=score, computed_at=WHEN
                )
            )
    s = _settings(settings)
    publisher = ChainWeightPublisher(s, database, chain, sleep=pytest.fail)
    result = materialize(
        [round_weights],
        partition_key=WHEN.strftime("%Y-%m-%d"),
        resources={"settings": s, "db": database, "weight_publisher": publisher},
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    (row,) = _rows(database)
    assert row.status == "succeeded" and chain.sent[0][1] == row.uids
    assert 3 not in row.uids  # the active validator's score earns it no weight on chain
    assert {1, 2} <= set(row.uids) <= {0, 1, 2} and max(row.weights_u16) == U16_MAX  # uid 0: the burn uid
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(weight_sets.c.publisher)).scalar_one() == "chain"
