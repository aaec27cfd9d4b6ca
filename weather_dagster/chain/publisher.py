"""Weights on chain: the weight set recorded in the database, then sent, every attempt recorded.

One ``publish`` call: the database publisher records the weight set (the offline history stays
whole); the chain is read (neurons, block, rate limit, commit-reveal flag); ``convert`` turns the
vector into the extrinsic's uids and u16 weights; then, unless in dry-run mode, the weights are set.
Every attempt, dry runs and rate-limit waits included, is one ``weather_weight_submissions`` row.
A refused or failed extrinsic is retried with core/retry.py's download backoff (scaled in test
mode) up to ``chain.publish_max_attempts``; when the attempts run out the asset fails, after the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from weather_dagster.chain.client import ChainClient
from weather_dagster.chain.convert import (
    active_validators,
    chain_weights,
    neurons_from_sdk,
    rate_limit,
)
from weather_dagster.core.retry import ErrorClass, RetryPolicy, WorkKind, classify
from weather_dagster.db.schema import SubmissionStatus, weight_submissions
from weather_dagster.db.types import utcnow
from weather_dagster.settings import Settings
from weather_dagster.stats.weights import DatabaseWeightPublisher, WeightVector

_NO_RETRY = {ErrorClass.INVALID, ErrorClass.REJECTED}


class WeightSetRefused(ConnectionError):
    """The chain answered the extrinsic with a failure (retried: most refusals are transient)."""


class ValidatorNotRegistered(ValueError):
    """The wallet's hotkey holds no uid on the subnet: no attempt can succeed."""


class ChainPublishFailed(RuntimeError):
    """Every attempt failed; the rows in ``weather_weight_submissions`` say why."""


class ChainWeightPublisher:
    """Sets the round weights on chain for ``settings.chain.netuid`` (or records them, in dry-run)."""

    def __init__(
        self,
        settings: Settings,
        database,
        client: ChainClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings, self.database, self.client = settings, database, client
        self.sleep, self.clock = sleep, clock
        self.policy = RetryPolicy.from_settings(settings)
        self.offline = DatabaseWeightPublisher(database)
        self.name = "chain-dry-run" if settings.chain.dry_run else "chain"
        self.offline.name = self.name

    def publish(self, vector: WeightVector, computed_for: datetime, now: datetime) -> None:
        self.offline.publish(vector, computed_for, now)
        chain = self.settings.chain
        attempt = self._last_attempt(computed_for)
        for n in range(chain.publish_max_attempts):
            attempt += 1
            row: dict = {"computed_for": computed_for, "attempt": attempt, "netuid": chain.netuid}
            row.update(version_key=chain.version_key, uids=[], weights_u16=[])
            try:
                wait_s = self._attempt(vector, row)
            except Exception as exc:
                error_class = classify(exc)
                if isinstance(exc, ValidatorNotRegistered):
                    error_class = ErrorClass.INVALID
                row.update(status=SubmissionStatus.FAILED.value, message=str(exc)[:2000], error_class=error_class.value)
                wait_s = None if error_class in _NO_RETRY else self.policy.backoff(WorkKind.DOWNLOAD, attempt)
            if row["status"] in (SubmissionStatus.SUCCEEDED.value, SubmissionStatus.DRY_RUN.value):
                self._record(row)
                return
            if n == chain.publish_max_attempts - 1:
                wait_s = None  # the last attempt of this call: nothing is scheduled after it
            row["next_attempt_at"] = None if wait_s is None else self.clock() + timedelta(seconds=wait_s)
            self._record(row)
            if wait_s is None:
                break
            self.sleep(wait_s)
        raise ChainPublishFailed(
            f"weights for {computed_for.isoformat()} not set on netuid {chain.netuid} after attempt {attempt}: "
            "see weather_weight_submissions"
        )

    def _attempt(self, vector: WeightVector, row: dict) -> float | None:
        """One try; fills ``row``; returns the seconds to wait before the next try (None: none)."""
        chain, client = self.settings.chain, self.client
        row["mode"] = "dry_run" if chain.dry_run else "set"
        hotkey = client.hotkey_ss58
        row["validator_hotkey"] = hotkey
        neurons = neurons_from_sdk(client.neurons(chain.netuid))
        block = client.current_block()
        row["block"] = block
        own = next((n for n in neurons if n.info.hotkey == hotkey), None)
        burn_uid = vector.details.get("burn_uid") if vector.details.get("burn") else None
        planned = chain_weights(
            vector.weights,
            [n.info.uid for n in neurons],
            zero_uids=active_validators(neurons, block, chain.active_validator_blocks),
            exempt_uid=burn_uid,
            fallback_uid=self.settings.scoring.fallback_uid,
        )
        row.update(uids=planned.uids, weights_u16=planned.weights_u16)
        if not chain.dry_run and client.commit_reveal_enabled(chain.netuid):
            row["mode"] = "commit"
        if own is None:
            if chain.dry_run:
                row.update(status=SubmissionStatus.DRY_RUN.value, message=f"hotkey {hotkey} holds no uid (dry run)")
                return None
            raise ValidatorNotRegistered(f"hotkey {hotkey} holds no uid on netuid {chain.netuid}")
        limit = rate_limit(block, own.last_update, client.weights_rate_limit(chain.netuid))
        row.update(blocks_since_update=limit.blocks_since_update, rate_limit_blocks=limit.rate_limit_blocks)
        if chain.dry_run:
            allowed = "allowed" if limit.allowed else f"rate-limited for {limit.blocks_to_wait} more blocks"
            message = f"would set {len(planned.uids)} weights: {allowed}"
            row.update(status=SubmissionStatus.DRY_RUN.value, message=message)
            return None
        if not limit.allowed:
            wait_s = limit.blocks_to_wait * chain.block_time_s
            row.update(status=SubmissionStatus.RATE_LIMITED.value, message=f"{limit.blocks_to_wait} blocks to wait")
            return wait_s if wait_s <= chain.max_rate_limit_wait_s else None
        ok, message = client.set_weights(chain.netuid, planned.uids, planned.weights_u16, chain.version_key)
        if not ok:
            raise WeightSetRefused(message or "the chain refused the weights")
        row.update(status=SubmissionStatus.SUCCEEDED.value, message=message or "included")
        return None

    def _last_attempt(self, computed_for: datetime) -> int:
        with self.database.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(weight_submissions.c.attempt), 0)).where(
                    weight_submissions.c.computed_for == computed_for
                )
            ).scalar_one()

    def _record(self, row: dict) -> None:
        with self.database.engine.begin() as conn:
            conn.execute(sa.insert(weight_submissions).values(**row, created_at=self.clock()))
