"""The only code that talks to the chain: one ``bittensor`` SDK call per method, nothing decided here.

Every method is a single SDK call whose result goes straight to ``convert``; what this module does
not test (it cannot run without a subtensor node) is exactly those calls. ``bittensor`` is imported
lazily, so the validator runs without the optional ``chain`` extra until a chain adapter is used.
"""

from __future__ import annotations

from typing import Any, Protocol

from weather_dagster.settings import ChainSettings


class ChainClient(Protocol):
    """What the metagraph and weight adapters need from the chain (tests supply their own)."""

    hotkey_ss58: str

    def neurons(self, netuid: int) -> list[Any]: ...

    def current_block(self) -> int: ...

    def weights_rate_limit(self, netuid: int) -> int: ...

    def commit_reveal_enabled(self, netuid: int) -> bool: ...

    def set_weights(self, netuid: int, uids: list[int], weights: list[int], version_key: int) -> tuple[bool, str]: ...


def _outcome(result: Any) -> tuple[bool, str]:
    """An ``ExtrinsicResult`` as (success, message)."""
    return bool(getattr(result, "success", False)), str(getattr(result, "message", "") or "")


class BittensorChain:
    """``bittensor.Subtensor`` (blocking surface) and the standard wallet directory, opened on first use."""

    def __init__(self, settings: ChainSettings) -> None:
        self.settings = settings
        self._subtensor: Any = None
        self._wallet: Any = None

    @property
    def subtensor(self) -> Any:
        if self._subtensor is None:
            import bittensor  # the optional "chain" extra

            self._subtensor = bittensor.Subtensor(self.settings.endpoint or self.settings.network)
        return self._subtensor

    @property
    def wallet(self) -> Any:
        if self._wallet is None:
            import bittensor

            s = self.settings
            path = str(s.wallet_path.expanduser())
            self._wallet = bittensor.Wallet(name=s.wallet_name, hotkey=s.wallet_hotkey, path=path)
        return self._wallet

    @property
    def hotkey_ss58(self) -> str:
        return str(self.wallet.hotkey.ss58_address)

    def neurons(self, netuid: int) -> list[Any]:
        return list(self.subtensor.neurons.neurons(netuid=netuid, lite=True))

    def current_block(self) -> int:
        return int(self.subtensor.block)

    def weights_rate_limit(self, netuid: int) -> int:
        return int(self.subtensor.hyperparameters.weights_rate_limit(netuid=netuid))

    def commit_reveal_enabled(self, netuid: int) -> bool:
        return bool(self.subtensor.subnets.commit_reveal_enabled(netuid=netuid))

    def set_weights(self, netuid: int, uids: list[int], weights: list[int], version_key: int) -> tuple[bool, str]:
        # SetWeights picks a timelocked commit itself when the subnet runs commit-reveal (the mode the
        # publisher records comes from commit_reveal_enabled); u16 weights survive its max-scaling as is.
        from bittensor.intents import SetWeights

        intent = SetWeights(netuid=netuid, uids=uids, weights=[float(w) for w in weights], version_key=version_key)
        return _outcome(self.subtensor.execute(intent, self.wallet))
