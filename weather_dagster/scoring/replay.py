"""``weather-dagster replay``: recompute a signed score receipt and say whether it still holds.

Replay checks the receipt's own integrity (canonical form, sha256, sr25519 signature, settings
hash), re-reads the inputs the way scoring does (reference fields from the partition cache or the
sources, the miner's store through the verified reader, which checks every byte against the frozen
manifest), hashes each reference field again, recomputes the score with the recorded profile and
settings, and reports every component as equal or different, plus the first input whose hash
differs. The exit code tells the outcome (``EXIT_*``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from weather_dagster.core.errors import InvalidDataError, ManifestError, WeatherError
from weather_dagster.db.schema import forecast_runs, miner_responses, score_receipts
from weather_dagster.scoring.day1 import score_day1
from weather_dagster.scoring.era5 import score_era5_lead
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.scoring.receipts import (
    DAY1,
    DAY1_LEAD,
    DIGEST,
    ERA5,
    FieldDigests,
    StoredReceipt,
    canonical_json,
    day1_components,
    era5_components,
    get_receipt,
    receipts_of,
    settings_body,
)
from weather_dagster.settings import ScoringSettings

EXIT_EQUAL = 0
EXIT_DIFFERENT = 3  # inputs unchanged, a component recomputes differently
EXIT_INPUT_CHANGED = 4  # an input's hash differs (or the frozen manifest changed)
EXIT_NOT_FOUND = 5  # no such receipt, or an input can no longer be read
EXIT_BAD_SIGNATURE = 6  # the receipt itself does not verify
OUTCOMES = {
    EXIT_EQUAL: "equal",
    EXIT_DIFFERENT: "different",
    EXIT_INPUT_CHANGED: "input changed",
    EXIT_NOT_FOUND: "not found",
    EXIT_BAD_SIGNATURE: "bad signature",
}


@dataclass
class ComponentCheck:
    name: str
    recorded: Any
    replayed: Any

    @property
    def equal(self) -> bool:
        a, b = self.recorded, self.replayed
        if isinstance(a, float) and isinstance(b, float):
            return a == b or (math.isnan(a) and math.isnan(b))
        return a == b and type(a) is type(b)


@dataclass
class ReplayReport:
    receipt: StoredReceipt
    exit_code: int
    detail: str = ""
    first_changed_input: str | None = None
    components: list[ComponentCheck] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return OUTCOMES[self.exit_code]

    def lines(self) -> list[str]:
        body = self.receipt.body
        lead = "day1" if body["kind"] == DAY1 else f"era5 lead {body['lead_hours']}h"
        out = [
            f"receipt {self.receipt.receipt_sha256[:16]} run {body['round']['run_id']} uid {body['miner']['uid']} "
            f"{lead} profile {body['scoring']['profile']}: {self.outcome.upper()}"
        ]
        if self.detail:
            out.append(f"  {self.detail}")
        if self.first_changed_input:
            out.append(f"  first input whose hash differs: {self.first_changed_input}")
        for check in self.components:
            verdict = "equal" if check.equal else "DIFFERENT"
            extra = "" if check.equal else f" (recorded {check.recorded!r}, replayed {check.replayed!r})"
            out.append(f"  {verdict:9} {check.name}{extra}")
        return out


def input_key(entry: Mapping[str, Any]) -> str:
    """How an input is named in reports: ``era5 t500 @ 2026-01-12T00:00:00Z``."""
    level = "" if entry.get("level") is None else str(entry["level"])
    return f"{entry['source']} {entry['variable']}{level} @ {' '.join(map(str, entry.get('at', [])))}"


def check_integrity(receipt: StoredReceipt) -> str | None:
    """Why the receipt itself cannot be trusted, or ``None``."""
    if not receipt.verify():
        return "the signature, hash or canonical form of the receipt does not verify"
    scoring = receipt.body["scoring"]
    if settings_body(ScoringSettings.model_validate(scoring["settings"]))[1] != scoring["settings_sha256"]:
        return "the recorded scoring settings do not match their hash"
    return None


def first_changed(recorded: list[dict], replayed: list[dict]) -> str | None:
    """The first recorded input (in read order) that replay read differently, or did not read at all."""
    seen = {input_key(e) + f" {e['dtype']} {e['shape']}": e[DIGEST] for e in replayed}
    for entry in recorded:
        if seen.get(input_key(entry) + f" {entry['dtype']} {entry['shape']}") != entry[DIGEST]:
            return input_key(entry)
    return None


def _current_manifest(engine: sa.Engine | None, body: dict) -> str | None:
    if engine is None:
        return body["manifest_sha256"]
    r = miner_responses.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(r.verification_hash_claimed).where(
                r.run_id == body["round"]["run_id"],
                r.miner_uid == body["miner"]["uid"],
                r.miner_hotkey == body["miner"]["hotkey"],
            )
        ).scalar()


class _StoreGuard:
    """The miner's forecast, remembering the first read the verified reader refused.

    ERA5 scoring turns a refused read into a rejected lead (``InvalidDataError``); replay must
    instead say that the miner's store no longer matches its frozen manifest, and where."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.refused: str | None = None

    @property
    def grid(self):
        return self._inner.grid

    def field(self, variable: str, level_hpa: int | None, lead_hours: int):
        try:
            return self._inner.field(variable, level_hpa, lead_hours)
        except ManifestError as exc:
            level = "" if level_hpa is None else str(level_hpa)
            self.refused = self.refused or f"miner store {variable}{level} @ {lead_hours}h ({exc})"
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def recompute(body: dict, inputs: ScoringInputs) -> tuple[dict[str, Any], list[dict], str | None]:
    """(components, input digests, first refused store read) of the score recomputed from ``inputs``."""
    scoring = ScoringSettings.model_validate(body["scoring"]["settings"])
    init = datetime.fromisoformat(body["round"]["init_time"].replace("Z", "+00:00"))
    run_id, uid, hotkey = body["round"]["run_id"], body["miner"]["uid"], body["miner"]["hotkey"]
    # Every field hashed as read (never a digest the cache recorded), the receipt's own way.
    digests = FieldDigests(trust_cache=False, version=body.get("receipt_version", 1))
    forecast = _StoreGuard(inputs.forecast(run_id, uid, hotkey))
    if body["kind"] == DAY1:
        result = score_day1(
            forecast,
            digests.wrap(inputs.truth("gfs_analysis", init), "gfs_analysis"),
            digests.wrap(inputs.truth("gfs_forecast", init), "gfs_forecast"),
            digests.wrap(inputs.climatology(), "climatology"),
            init,
            scoring,
        )
        return _as_recorded(day1_components(result)), digests.entries, forecast.refused
    truth = digests.wrap(inputs.truth("era5", init), "era5")
    climatology = digests.wrap(inputs.climatology(), "climatology")
    lead = score_era5_lead(forecast, truth, climatology, init, body["lead_hours"], scoring)
    return _as_recorded(era5_components(lead)), digests.entries, forecast.refused


def _as_recorded(components: dict[str, Any]) -> dict[str, Any]:
    """Through the canonical JSON, as the receipt holds them (so 1.0 compares with 1.0, not 1)."""
    return json.loads(canonical_json(components))


def replay(receipt: StoredReceipt, inputs: ScoringInputs, engine: sa.Engine | None = None) -> ReplayReport:
    """Verify, recompute and compare one receipt (``engine``: to compare the frozen manifest hash)."""
    problem = check_integrity(receipt)
    if problem:
        return ReplayReport(receipt, EXIT_BAD_SIGNATURE, problem)
    body = receipt.body
    if _current_manifest(engine, body) != body["manifest_sha256"]:
        return ReplayReport(receipt, EXIT_INPUT_CHANGED, "the frozen manifest changed", "frozen manifest")
    try:
        components, entries, refused = recompute(body, inputs)
    except ManifestError as exc:
        return ReplayReport(receipt, EXIT_INPUT_CHANGED, f"miner store: {exc}", f"miner store ({exc})")
    except InvalidDataError as exc:  # the recorded score was computed, the recomputation refuses the data
        return ReplayReport(receipt, EXIT_DIFFERENT, f"recomputing failed: {exc}")
    except (WeatherError, OSError, LookupError, httpx.HTTPError) as exc:
        name = type(exc).__name__
        return ReplayReport(receipt, EXIT_NOT_FOUND, f"an input cannot be read any more: {name}: {exc}")
    recorded = body["components"]
    checks = [ComponentCheck(n, recorded.get(n), components.get(n)) for n in sorted(set(recorded) | set(components))]
    changed = refused or first_changed(body["inputs"], entries)
    if changed:
        return ReplayReport(receipt, EXIT_INPUT_CHANGED, "", changed, checks)
    code = EXIT_EQUAL if all(c.equal for c in checks) else EXIT_DIFFERENT
    return ReplayReport(receipt, code, "", None, checks)


def worst(codes: Iterable[int]) -> int:
    """One exit code for several receipts: the most serious outcome."""
    order = [EXIT_EQUAL, EXIT_DIFFERENT, EXIT_INPUT_CHANGED, EXIT_NOT_FOUND, EXIT_BAD_SIGNATURE]
    return max(codes, key=order.index, default=EXIT_NOT_FOUND)


def pretty(receipt: StoredReceipt) -> str:
    """The receipt for people: the body indented, the score's components and inputs included."""
    return json.dumps(receipt.export(), indent=2, sort_keys=True)


# -- the command ------------------------------------------------------------------------------------


def _run_id(conn: sa.Connection, round_arg: str) -> int | None:
    if round_arg.isdigit():
        return int(round_arg)
    day = datetime.fromisoformat(round_arg[:10]).replace(tzinfo=UTC)
    init = forecast_runs.c.gfs_init_time_utc
    return conn.execute(
        sa.select(forecast_runs.c.id).where(init >= day, init < day + timedelta(days=1)).order_by(init).limit(1)
    ).scalar()


def receipt_by_hash(conn: sa.Connection, sha256_prefix: str) -> StoredReceipt | None:
    r = score_receipts.c
    rows = conn.execute(
        sa.select(r.receipt_json, r.receipt_sha256, r.signature, r.signer_ss58)
        .where(r.receipt_sha256.like(sha256_prefix.lower() + "%"))
        .limit(2)
    ).all()
    return StoredReceipt(*rows[0]) if len(rows) == 1 else None


def select_receipts(conn: sa.Connection, args: argparse.Namespace) -> list[StoredReceipt]:
    if args.receipt:
        path = Path(args.receipt)
        if path.is_file():
            return [StoredReceipt.from_export(json.loads(path.read_text()))]
        found = receipt_by_hash(conn, args.receipt)
        return [found] if found else []
    run_id = _run_id(conn, args.round)
    if run_id is None:
        return []
    if args.lead is None:
        return receipts_of(conn, run_id, args.uid)
    kind = DAY1 if args.lead == DAY1_LEAD else ERA5
    found = get_receipt(conn, run_id, args.uid, kind, args.lead)
    return [found] if found else []


def _command(args: argparse.Namespace) -> int:
    from weather_dagster.db.engine import Database
    from weather_dagster.reference.sources import ReferenceData
    from weather_dagster.scoring.live_inputs import LiveScoringInputs
    from weather_dagster.settings import load_settings

    if not args.receipt and (args.round is None or args.uid is None):
        print("weather-dagster replay: give RECEIPT, or --round R --uid U [--lead L]", file=sys.stderr)
        return EXIT_NOT_FOUND
    settings = load_settings()
    database = Database(settings.resolved_database_url)
    try:
        with database.engine.connect() as conn:
            chosen = select_receipts(conn, args)
        if not chosen:
            print("weather-dagster replay: no such receipt", file=sys.stderr)
            return EXIT_NOT_FOUND
        codes = []
        for receipt in chosen:
            if args.show:
                print(pretty(receipt))
            scoring = ScoringSettings.model_validate(receipt.body["scoring"]["settings"])
            reference = ReferenceData(settings)
            inputs = LiveScoringInputs(settings.model_copy(update={"scoring": scoring}), database, reference)
            try:
                report = replay(receipt, inputs, database.engine)
            finally:
                inputs.release()
                reference.close()
            print("\n".join(report.lines()))
            codes.append(report.exit_code)
        return worst(codes)
    finally:
        database.dispose()


def add_replay_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "replay",
        help="recompute a signed score receipt and compare it component by component",
        description=__doc__.splitlines()[0]
        + f" Exit codes: {', '.join(f'{code} {name}' for code, name in OUTCOMES.items())}.",
    )
    parser.add_argument("receipt", nargs="?", help="a receipt file (JSON, as exported) or a receipt sha256 (prefix)")
    parser.add_argument("--round", help="the round: run id, or its init date (YYYY-MM-DD)")
    parser.add_argument("--uid", type=int, help="the miner uid")
    parser.add_argument("--lead", type=int, help="ERA5 lead hours (0: Day1); all receipts of the miner if omitted")
    parser.add_argument("--show", action="store_true", help="print each receipt (pretty JSON) before replaying it")
    parser.set_defaults(handler=_command)
