"""Climatology from the WeatherBench 2 ERA5 1990-2019 6-hourly Zarr, read chunk-aligned.

The real store chunks every variable as (3 dayofyear, 3 hour, [1 level,] 721, 1440): one chunk holds
nine (day-of-year, hour) slots, so a plain per-slot selection fetches and decodes nine times what it
keeps, and the neighbouring slots fetch the same chunks again. Here one slot's partition is built
from a *block*, the slots that share its chunks: each real chunk is fetched and decoded once, the
wanted slot is returned, and the neighbours scoring will ask for (the hours in use, see
:func:`hours_in_use`) go straight into the partition cache.

Memory stays bounded: one chunk (one variable, one level, nine slots: 37 MB float32 at 0.25 degree)
is decoded at a time and split into per-slot fields spilled to ``.npy`` files beside the cache; then
each slot is assembled and written on its own (0.29 GB at 0.25 degree, what one slot always took).
The spill holds at most the claimed slots' fields (0.29 GB each) and is removed at the end.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from weather_dagster.core.errors import SourceError
from weather_dagster.reference.cache import PartitionCache
from weather_dagster.reference.canonical import REJECTED, canonical_dataset, check_fields, orient
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.http import Timeouts
from weather_dagster.reference.variables import VARIABLES
from weather_dagster.reference.zarr_http import LazyConsolidatedStore, read

Slot = tuple[int, int]  # (day of year, hour)
KIND = "climatology"


def climatology_key(day_of_year: int, hour: int) -> str:
    """The static partition key, e.g. ``001-00``."""
    if not 1 <= day_of_year <= 366 or hour not in (0, 6, 12, 18):
        raise ValueError(f"no climatology slice for day {day_of_year}, hour {hour}")
    return f"{day_of_year:03d}-{hour:02d}"


def parse_climatology_key(key: str) -> tuple[int, int]:
    day, _, hour = key.partition("-")
    result = (int(day), int(hour))
    climatology_key(*result)
    return result


def hours_in_use(cycle_hour_utc: int, lead_hours: Iterable[int]) -> frozenset[int]:
    """The climatology hours scoring reads: valid hour of each lead, rounded down to 6 h like the
    reference's slot choice. Neighbour slots at other hours are never prefetched."""
    return frozenset(((cycle_hour_utc + lead) % 24) // 6 * 6 for lead in lead_hours)


@dataclass(frozen=True)
class Block:
    """The slots sharing the chunks of one slot: index ranges along ``hour`` and ``dayofyear``."""

    hours: slice
    days: slice
    slots: tuple[Slot, ...]  # hour-major, matching the index ranges


@dataclass
class BlockRead:
    """Per-slot fields of one block, spilled to ``directory``; what it cost to read them."""

    directory: Path
    slots: tuple[Slot, ...]
    chunks_read: int = 0
    chunk_bytes_decoded: int = 0
    fields: dict[Slot, dict[tuple[str, int | None], Path]] = field(default_factory=dict)

    def fields_of(self, slot: Slot) -> dict[tuple[str, int | None], np.ndarray]:
        return {key: np.load(path) for key, path in self.fields[slot].items()}


@dataclass
class ClimatologyStore:
    url: str
    grid: Grid
    timeouts: Timeouts = field(default_factory=Timeouts)
    _store: LazyConsolidatedStore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._store = LazyConsolidatedStore(self.url, self.timeouts)

    def dataset(self) -> xr.Dataset:
        return self._store.dataset()

    def block(self, day_of_year: int, hour: int, variables: Iterable[str]) -> Block:
        """The slots stored in the same chunks as (day, hour) in every variable (their intersection,
        in case variables were chunked differently)."""
        ds = self.dataset()
        index = {}
        for coord, value in (("dayofyear", day_of_year), ("hour", hour)):
            values = [int(v) for v in ds[coord].values]
            if value not in values:
                raise SourceError(self.url, f"climatology has no {coord} {value}")
            index[coord] = values.index(value)
        ranges = {"hour": [0, ds.sizes["hour"]], "dayofyear": [0, ds.sizes["dayofyear"]]}
        for name in variables:
            da = ds[VARIABLES[name].era5_name]
            chunks = dict(zip(da.dims, da.encoding.get("chunks") or da.shape, strict=True))
            for dim, (low, high) in ranges.items():
                start = index[dim] // chunks[dim] * chunks[dim]
                ranges[dim] = [max(low, start), min(high, start + chunks[dim])]
        hours, days = slice(*ranges["hour"]), slice(*ranges["dayofyear"])
        hour_values, day_values = ds["hour"].values[hours], ds["dayofyear"].values[days]
        slots = tuple((int(d), int(h)) for h in hour_values for d in day_values)
        return Block(hours, days, slots)

    def read_block(
        self, block: Block, variables: tuple[str, ...], levels: tuple[int, ...], keep: set[Slot], directory: Path
    ) -> BlockRead:
        """Read every chunk of ``block`` once; spill the fields of the ``keep`` slots to ``directory``."""
        ds = self.dataset()
        present = {int(v): i for i, v in enumerate(ds["level"].values)}
        result = BlockRead(directory, block.slots, fields={slot: {} for slot in block.slots if slot in keep})
        starts = {"hour": block.hours.start, "dayofyear": block.days.start}
        for name in variables:
            spec = VARIABLES[name]
            da = ds[spec.era5_name].isel(hour=block.hours, dayofyear=block.days)
            if not spec.atmospheric:
                self._split(result, name, {None: self._read(result, da, starts)})
                continue
            missing = [lvl for lvl in levels if lvl not in present]
            if missing:
                raise SourceError(self.url, f"missing levels {missing} of {spec.era5_name}")
            level_chunk = dict(zip(da.dims, da.encoding.get("chunks") or da.shape, strict=True))["level"]
            groups: dict[int, list[int]] = {}
            for level in levels:  # one read per level chunk, covering every wanted level in it
                groups.setdefault(present[level] // level_chunk, []).append(level)
            for group, wanted in groups.items():
                first = group * level_chunk
                part = self._read(result, da.isel(level=slice(first, first + level_chunk)), {**starts, "level": first})
                self._split(result, name, {lvl: part[:, :, present[lvl] - first] for lvl in wanted})
        return result

    def _read(self, result: BlockRead, da: xr.DataArray, starts: dict[str, int]) -> np.ndarray:
        """(hour, day, [level,] lat, lon) in canonical orientation; counts the chunks it decodes.

        ``starts``: where the selection begins along each selected dimension of the stored array,
        so the count is the number of stored chunks the selection touches (zarr decodes them whole).
        """
        chunks = da.encoding.get("chunks") or da.shape
        touched = 1
        for dim, size, chunk in zip(da.dims, da.shape, chunks, strict=True):
            start = starts.get(str(dim), 0)
            touched *= math.ceil((start + size) / chunk) - start // chunk
        result.chunks_read += touched
        result.chunk_bytes_decoded += touched * math.prod(chunks) * da.dtype.itemsize
        order = [d for d in ("hour", "dayofyear", "level") if d in da.dims]
        lat = "latitude" if "latitude" in da.dims else "lat"
        lon = "longitude" if "longitude" in da.dims else "lon"
        return orient(read(da.transpose(*order, lat, lon), self.url), self.grid, self.url)

    def _split(self, result: BlockRead, name: str, arrays: dict[int | None, np.ndarray]) -> None:
        for level, values in arrays.items():
            for i, slot in enumerate(result.slots):
                if slot not in result.fields:
                    continue
                hour_i, day_i = divmod(i, values.shape[1])
                path = result.directory / f"{slot[0]:03d}-{slot[1]:02d}-{name}-{level}.npy"
                np.save(path, np.ascontiguousarray(values[hour_i, day_i]))
                result.fields[slot][(name, level)] = path

    def slot_dataset(
        self, read_result: BlockRead, slot: Slot, variables: tuple[str, ...], levels: tuple[int, ...]
    ) -> xr.Dataset:
        """One slot's canonical dataset (raises for a wrong grid or NaN; quarantines implausible fields)."""
        fields = read_result.fields_of(slot)
        rejected = check_fields(fields, self.grid, self.url)
        attrs = {"source": "climatology", "source_url": self.url, "dayofyear": slot[0], "hour": slot[1]}
        return canonical_dataset(fields, variables, levels, self.grid, attrs={**attrs, REJECTED: rejected})


def load_slot(
    store: ClimatologyStore,
    cache: PartitionCache,
    slot: Slot,
    variables: tuple[str, ...],
    levels: tuple[int, ...],
    prefetch_hours: frozenset[int],
) -> tuple[xr.Dataset, dict[str, Any]]:
    """The partition builder: ``slot``'s dataset, with its block's neighbours at ``prefetch_hours``
    written to the cache on the way (those another worker is building, or that are cached, skipped).

    The caller holds ``slot``'s cache lock; neighbours are claimed without waiting, so two workers
    building neighbouring slots never deadlock, and a neighbour that fails its checks is just not
    cached (its own partition run reports the failure).
    """
    block = store.block(*slot, variables)
    neighbours = [s for s in block.slots if s != slot and s[1] in prefetch_hours]
    with cache.claim(KIND, [climatology_key(*s) for s in neighbours]) as claimed:
        keep = {slot} | {s for s in neighbours if climatology_key(*s) in claimed}
        with tempfile.TemporaryDirectory(prefix="climatology-block-", dir=cache.spill_dir()) as tmp:
            result = store.read_block(block, variables, levels, keep, Path(tmp))
            info: dict[str, Any] = {
                "source_urls": [store.url],
                "chunks_read": result.chunks_read,
                "chunk_bytes_decoded": result.chunk_bytes_decoded,
                "block_slots": [climatology_key(*s) for s in block.slots],
            }
            cached = []
            for other in sorted(keep - {slot}):
                try:
                    dataset = store.slot_dataset(result, other, variables, levels)
                except SourceError:
                    continue
                by_product = {
                    **info,
                    "chunks_read": 0,
                    "chunk_bytes_decoded": 0,
                    "prefetched_by": climatology_key(*slot),
                }
                cache.put(KIND, climatology_key(*other), dataset, by_product)  # its cost is the builder's
                cached.append(climatology_key(*other))
                del dataset
            dataset = store.slot_dataset(result, slot, variables, levels)
    info["neighbour_slices_cached"] = len(cached)
    info["neighbours"] = cached
    return dataset, info
