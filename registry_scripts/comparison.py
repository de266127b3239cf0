"""GET /model/variants as one server answers it, and several servers' answers merged: counts and
histogram buckets summed per variant and version, percentiles recomputed from the summed buckets as
Prometheus's histogram_quantile does. Pure: no I/O (`registry_scripts.compare` fetches and prints).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, field_serializer

from registry_scripts import cli

VARIANT_ORDER = ("champion", "challenger")


# --- /model/variants, as one server answers it, and as the servers' answers merge -----------------


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


class Bucket(_Document):
    """A cumulative histogram bucket: `count` observations at or below `le` (`"+Inf"` in JSON)."""

    le: float
    count: int

    @field_serializer("le")
    def _write_le(self, le: float) -> float | str:
        return "+Inf" if le == math.inf else le


class Quantiles(_Document):
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class Stats(_Document):
    """A variant's counts since its version was loaded."""

    requests: int
    errors: int
    rows: int
    classes: dict[str, int]
    latency_seconds: Quantiles
    latency_buckets: tuple[Bucket, ...]


class ReloadError(_Document):
    version: str | None = None
    reason: str
    at: str | None = None


class Variant(_Document):
    variant: str
    state: str
    model_uri: str | None = None
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    loaded_at: str | None = None
    runtime: str | None = None
    last_reload_error: ReloadError | None = None
    stats: Stats | None = None


class ShadowRequests(_Document):
    scored: int = 0
    dropped: int = 0
    failed: int = 0
    skipped: int = 0


class Shadow(_Document):
    """How the shadow challenger's answers compared with the champion's."""

    version: str | None = None
    requests: ShadowRequests
    rows_compared: int
    same_class: int
    agreement: float | None = None
    probability_difference: Quantiles
    probability_difference_buckets: tuple[Bucket, ...]


class VariantsDocument(_Document):
    """One server's answer to GET /model/variants."""

    mode: str
    percent: float
    variants: tuple[Variant, ...]
    shadow: Shadow | None = None


class ServerState(_Document):
    """How one server holds a variant's version."""

    url: str
    state: str
    loaded_at: str | None = None
    last_reload_error: ReloadError | None = None


class VariantGroup(_Document):
    """A variant at one version, summed over the servers that serve it; `state` is "mixed" when
    they differ (each server's is in `servers`)."""

    variant: str
    name: str | None
    version: str | None
    alias: str | None
    model_uri: str | None
    state: str
    servers: tuple[ServerState, ...]
    stats: Stats | None


class ShadowGroup(Shadow):
    """The shadow comparison of one challenger version, summed over `servers`."""

    servers: tuple[str, ...]


class Routing(_Document):
    """The mode and percentage that `servers` route by."""

    mode: str
    percent: float
    servers: tuple[str, ...]


class Comparison(_Document):
    """Every server's /model/variants, merged. `notes` says where the servers disagree."""

    servers: tuple[str, ...]
    routing: tuple[Routing, ...]
    variants: tuple[VariantGroup, ...]
    shadow: tuple[ShadowGroup, ...]
    notes: tuple[str, ...]

    def groups(self, variant: str) -> list[VariantGroup]:
        return [group for group in self.variants if group.variant == variant]


# --- Merging (pure) --------------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: Sequence[Bucket]) -> float | None:
    """The q-quantile of cumulative `buckets`, estimated as Prometheus's histogram_quantile does:
    linear interpolation within the bucket the rank falls in (from 0 for the first), the highest
    finite bound when it falls in the +Inf bucket. None where Prometheus answers NaN: no
    observations, or no +Inf bucket."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} is not in (0, 1]")
    ordered = sorted(buckets, key=lambda bucket: bucket.le)
    if len(ordered) < 2 or ordered[-1].le != math.inf:
        return None
    counts = list(itertools.accumulate((bucket.count for bucket in ordered), max))  # made monotonic
    if counts[-1] == 0:
        return None
    rank = q * counts[-1]
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(ordered) - 1:
        return ordered[-2].le
    if index == 0 and ordered[0].le <= 0:
        return ordered[0].le
    start, below = (ordered[index - 1].le, counts[index - 1]) if index else (0.0, 0)
    return start + (ordered[index].le - start) * (rank - below) / (counts[index] - below)


def quantiles(buckets: Sequence[Bucket]) -> Quantiles:
    """p50, p90 and p99 of `buckets`."""
    return Quantiles(
        p50=histogram_quantile(0.5, buckets),
        p90=histogram_quantile(0.9, buckets),
        p99=histogram_quantile(0.99, buckets),
    )


def sum_buckets(histograms: Sequence[Sequence[Bucket]], what: str) -> tuple[Bucket, ...]:
    """The bucket-wise sum of cumulative histograms with the same bounds."""
    bounds = {tuple(sorted(bucket.le for bucket in histogram)) for histogram in histograms}
    if len(bounds) > 1:
        raise cli.CliError(f"the servers' {what} histograms have different buckets: cannot merge them")
    totals: Counter[float] = Counter()
    for histogram in histograms:
        for bucket in histogram:
            totals[bucket.le] += bucket.count
    return tuple(Bucket(le=le, count=totals[le]) for le in sorted(totals))


def merge_stats(stats: Sequence[Stats]) -> Stats | None:
    """Counts summed, latency percentiles recomputed from the summed buckets; None for none."""
    if not stats:
        return None
    buckets = sum_buckets([s.latency_buckets for s in stats], "latency")
    classes: Counter[str] = Counter()
    for s in stats:
        classes.update(s.classes)
    return Stats(
        requests=sum(s.requests for s in stats),
        errors=sum(s.errors for s in stats),
        rows=sum(s.rows for s in stats),
        classes=dict(classes),
        latency_seconds=quantiles(buckets),
        latency_buckets=buckets,
    )


def merge_shadow(shadows: Sequence[tuple[str, Shadow]]) -> ShadowGroup:
    """One challenger version's shadow comparisons (url, shadow), summed."""
    buckets = sum_buckets([s.probability_difference_buckets for _, s in shadows], "probability-difference")
    rows_compared = sum(s.rows_compared for _, s in shadows)
    same_class = sum(s.same_class for _, s in shadows)
    return ShadowGroup(
        version=shadows[0][1].version,
        requests=ShadowRequests(
            scored=sum(s.requests.scored for _, s in shadows),
            dropped=sum(s.requests.dropped for _, s in shadows),
            failed=sum(s.requests.failed for _, s in shadows),
            skipped=sum(s.requests.skipped for _, s in shadows),
        ),
        rows_compared=rows_compared,
        same_class=same_class,
        agreement=same_class / rows_compared if rows_compared else None,
        probability_difference=quantiles(buckets),
        probability_difference_buckets=buckets,
        servers=tuple(url for url, _ in shadows),
    )


def _merge_group(entries: Sequence[tuple[str, Variant]]) -> VariantGroup:
    first = entries[0][1]
    states = {variant.state for _, variant in entries}
    return VariantGroup(
        variant=first.variant,
        name=first.name,
        version=first.version,
        alias=next((v.alias for _, v in entries if v.alias is not None), None),
        model_uri=first.model_uri,
        state=states.pop() if len(states) == 1 else "mixed",
        servers=tuple(
            ServerState(url=url, state=v.state, loaded_at=v.loaded_at, last_reload_error=v.last_reload_error)
            for url, v in entries
        ),
        stats=merge_stats([v.stats for _, v in entries if v.stats is not None]),
    )


def _served(group: VariantGroup) -> str:
    return f"{group.name} version {group.version}" if group.version else f"nothing ({group.state})"


def _route(routing: Routing) -> str:
    return f"split {routing.percent:g}%" if routing.mode == "split" else routing.mode


def _notes(servers: Sequence[str], groups: Sequence[VariantGroup], routing: Sequence[Routing]) -> list[str]:
    notes = []
    for variant in dict.fromkeys(group.variant for group in groups):
        mine = [group for group in groups if group.variant == variant]
        if len(mine) > 1:
            where = "; ".join(f"{_served(g)} on {', '.join(s.url for s in g.servers)}" for g in mine)
            notes.append(f"{variant}: the servers serve different versions: {where}")
        present = {s.url for group in mine for s in group.servers}
        if missing := [url for url in servers if url not in present]:
            notes.append(f"{variant}: not configured on {', '.join(missing)}")
        for group in mine:
            for server in group.servers:
                if error := server.last_reload_error:
                    notes.append(
                        f"{variant}: the last reload on {server.url} failed"
                        f" (version {error.version or '?'}, at {error.at or '?'}): {error.reason}"
                    )
    if len(routing) > 1:
        where = "; ".join(f"{_route(r)} on {', '.join(r.servers)}" for r in routing)
        notes.append(f"the servers route differently: {where}")
    return notes


def merge(documents: Mapping[str, VariantsDocument]) -> Comparison:
    """The servers' documents (by URL) merged per (variant, registered model, version) and per
    shadow challenger version. Champion groups come first, then challenger ones, each in the
    order the servers were given."""
    servers = list(documents)
    found: dict[tuple[str, str | None, str | None], list[tuple[str, Variant]]] = {}
    shadows: dict[str | None, list[tuple[str, Shadow]]] = {}
    routes: dict[tuple[str, float], list[str]] = {}
    for url, document in documents.items():
        for variant in document.variants:
            found.setdefault((variant.variant, variant.name, variant.version), []).append((url, variant))
        if document.shadow is not None:
            shadows.setdefault(document.shadow.version, []).append((url, document.shadow))
        routes.setdefault((document.mode, document.percent), []).append(url)

    def rank(key: tuple[str, str | None, str | None]) -> int:
        return VARIANT_ORDER.index(key[0]) if key[0] in VARIANT_ORDER else len(VARIANT_ORDER)

    groups = [_merge_group(found[key]) for key in sorted(found, key=rank)]
    routing = [
        Routing(mode=mode, percent=percent, servers=tuple(urls)) for (mode, percent), urls in routes.items()
    ]
    return Comparison(
        servers=tuple(servers),
        routing=tuple(routing),
        variants=tuple(groups),
        shadow=tuple(merge_shadow(entries) for entries in shadows.values()),
        notes=tuple(_notes(servers, groups, routing)),
    )
