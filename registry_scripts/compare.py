"""Compare the champion and the challenger across servers, and promote the challenger.

python -m registry_scripts.compare                          # the server on http://127.0.0.1:8000
python -m registry_scripts.compare http://api-1:8000 http://api-2:8000 --api-key KEY
python -m registry_scripts.compare URL --json               # the merged document, as JSON
python -m registry_scripts.compare URL --promote            # @champion -> the challenger's version
python -m registry_scripts.compare URL --promote --yes      # the same, without asking

Each server's GET /model/variants is fetched and the answers merged per variant and version:
request, error, row and class counts and histogram buckets are summed, and the latency and
probability-difference percentiles are recomputed from the summed buckets as Prometheus's
histogram_quantile does. Servers that serve different versions of a variant are named, and each
version gets a column of its own. The API key is --api-key, else the API_KEY environment variable.

`--promote` needs every server to serve one champion version and one challenger version of the same
registered model, by alias. It points the champion's alias at the challenger's version (recorded,
so `registry_scripts.promote --rollback` moves the champion back; the challenger's alias stays
cleared) and deletes the challenger's alias, in the registry at --tracking-uri (default:
MLFLOW_TRACKING_URI). Two registry calls, not one transaction: should the second fail, delete the
challenger's alias by hand (the MLflow UI), or servers keep comparing a version with itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from mlflow import MlflowClient
from pydantic import ValidationError

from registry_scripts import cli
from registry_scripts.comparison import (
    Comparison,
    Routing,
    ShadowGroup,
    Stats,
    VariantsDocument,
    merge,
)
from registry_scripts.config import RegistrySettings
from registry_scripts.promote import describe
from registry_scripts.registry import AliasMove, ModelRegistry

DEFAULT_URL = "http://127.0.0.1:8000"
VARIANTS_PATH = "/model/variants"
YES = ("y", "yes")


# --- The report ----------------------------------------------------------------------------------


def _align(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "-"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _variant_rows(comparison: Comparison) -> list[list[str]]:
    groups = comparison.variants
    several = Counter(group.variant for group in groups)
    header = [""] + [
        g.variant if several[g.variant] == 1 else f"{g.variant} ({g.version or '-'})" for g in groups
    ]
    stats = [group.stats for group in groups]
    classes = list(dict.fromkeys(c for s in stats if s is not None for c in s.classes))
    total = len(comparison.servers)

    def row(label: str, cell: Callable[[Stats], str]) -> list[str]:
        return [label] + [cell(s) if s is not None else "-" for s in stats]

    return [
        header,
        ["version"] + [group.version or "-" for group in groups],
        ["state"] + [group.state for group in groups],
        ["servers"] + [f"{len(group.servers)} of {total}" for group in groups],
        row("requests", lambda s: str(s.requests)),
        row("error ratio", lambda s: _ratio(s.errors, s.requests)),
        *(
            row(f"class {name}", lambda s, n=name: _ratio(s.classes.get(n, 0), sum(s.classes.values())))
            for name in classes
        ),
        row("latency p50", lambda s: _ms(s.latency_seconds.p50)),
        row("latency p90", lambda s: _ms(s.latency_seconds.p90)),
        row("latency p99", lambda s: _ms(s.latency_seconds.p99)),
    ]


def _shadow_lines(shadow: ShadowGroup, total: int) -> list[str]:
    r = shadow.requests
    difference = shadow.probability_difference
    agreement = "-" if shadow.agreement is None else f"{shadow.agreement:.2%}"
    rows = [
        ["requests", f"scored {r.scored}, dropped {r.dropped}, failed {r.failed}, skipped {r.skipped}"],
        ["agreement", f"{agreement} ({shadow.same_class} of {shadow.rows_compared} rows in the same class)"],
        [
            "probability difference",
            f"p50 {_number(difference.p50)}, p90 {_number(difference.p90)}, p99 {_number(difference.p99)}",
        ],
    ]
    title = f"shadow: challenger version {shadow.version or '-'} on {len(shadow.servers)} of {total} servers"
    return [title, *_align(rows, indent="  ")]


def _routing_line(routing: Routing, every: bool) -> str:
    line = f"mode: {routing.mode}"
    if routing.mode == "split":
        line += f", the challenger answers {routing.percent:g}% of routing keys"
    return line if every else f"{line} (on {', '.join(routing.servers)})"


def format_report(comparison: Comparison) -> str:
    """Warnings where the servers disagree, the variants side by side, the shadow comparison, the mode."""
    lines = [f"warning: {note}" for note in comparison.notes]
    if lines:
        lines.append("")
    lines += _align(_variant_rows(comparison))
    for shadow in comparison.shadow:
        lines += ["", *_shadow_lines(shadow, len(comparison.servers))]
    lines.append("")
    lines += [_routing_line(r, every=len(comparison.routing) == 1) for r in comparison.routing]
    return "\n".join(lines)


# --- Promotion -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """Point `name@champion_alias` from `current` to `target`, then delete `challenger_alias`."""

    name: str
    champion_alias: str
    current: str
    target: str
    challenger_alias: str | None

    def describe(self) -> str:
        text = f"move {self.name}@{self.champion_alias} from {self.current} to {self.target}"
        return text + (f" and clear @{self.challenger_alias}" if self.challenger_alias else "")


def plan_promotion(comparison: Comparison) -> Promotion:
    """What promoting the challenger means; a CliError saying why when there is nothing to promote."""

    def refuse(reason: str) -> cli.CliError:
        return cli.CliError(f"nothing to promote: {reason}")

    total = len(comparison.servers)
    challengers, champions = comparison.groups("challenger"), comparison.groups("champion")
    if not challengers:
        raise refuse("no challenger is configured")
    if len(challengers) > 1:
        raise refuse("the servers serve different challenger versions")
    challenger = challengers[0]
    if challenger.state != "serving" or challenger.version is None or len(challenger.servers) < total:
        raise refuse(f"the challenger is not serving on every server (state: {challenger.state})")
    if len(champions) != 1 or len(champions[0].servers) < total:
        raise refuse("the servers serve different champion versions")
    champion = champions[0]
    if champion.name is None or champion.alias is None or champion.version is None:
        raise refuse(f"the champion is not served from a registry alias ({champion.model_uri})")
    if challenger.name != champion.name:
        raise refuse(f"the challenger is a version of {challenger.name}, not of {champion.name}")
    if challenger.version == champion.version:
        raise refuse(f"the challenger serves the champion's version {champion.version}")
    return Promotion(champion.name, champion.alias, champion.version, challenger.version, challenger.alias)


def _check_registry(registry: ModelRegistry, plan: Promotion) -> None:
    """Refuse when the registry's aliases no longer point where the servers' versions came from."""
    expected = {plan.champion_alias: plan.current}
    if plan.challenger_alias:
        expected[plan.challenger_alias] = plan.target
    for alias, version in expected.items():
        actual = registry.alias_version(alias)
        if actual != version:
            raise cli.CliError(
                f"not promoted: {plan.name}@{alias} is {actual or 'unset'} in the registry but the servers"
                f" serve {version}; compare again once they follow"
            )


def _confirmed(ask: Callable[[str], str]) -> bool:
    try:
        answer = ask("proceed? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in YES


def promote(
    comparison: Comparison, client: MlflowClient, *, assume_yes: bool, ask: Callable[[str], str] = input
) -> AliasMove:
    """Point the champion's alias at the challenger's version and delete the challenger's alias,
    after asking (`ask`, unless `assume_yes`). CliError when there is nothing to promote, the
    registry has moved since, or the answer is not yes."""
    plan = plan_promotion(comparison)
    registry = ModelRegistry(client, plan.name)
    _check_registry(registry, plan)
    print(f"promote: {plan.describe()}", flush=True)
    if not assume_yes:
        if not _confirmed(ask):
            raise cli.CliError("not promoted: declined")
        _check_registry(registry, plan)  # the aliases may have moved while the question was open
    move = registry.promote(plan.target, plan.champion_alias)
    print(describe(move, plan.name))
    if plan.challenger_alias:
        client.delete_registered_model_alias(plan.name, plan.challenger_alias)
        print(f"{plan.name}@{plan.challenger_alias}: {plan.target} -> unset")
    return move


# --- I/O -----------------------------------------------------------------------------------------


def _first_error(error: ValidationError) -> str:
    detail = error.errors()[0]
    return f"{'.'.join(str(part) for part in detail['loc'])}: {detail['msg']}"


def fetch(client: httpx.Client, url: str) -> VariantsDocument:
    """One server's /model/variants; a one-line CliError naming `url` when it cannot be had."""
    try:
        response = client.get(url.rstrip("/") + VARIANTS_PATH)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise cli.CliError(f"{url}: cannot reach the server ({error or type(error).__name__})") from None
    if response.status_code != 200:
        raise cli.CliError(
            f"{url}: GET {VARIANTS_PATH} answered {response.status_code} {response.reason_phrase}".rstrip()
        )
    try:
        return VariantsDocument.model_validate_json(response.content)
    except ValidationError as error:
        raise cli.CliError(
            f"{url}: GET {VARIANTS_PATH} answered an unexpected document ({_first_error(error)})"
        ) from None


def fetch_all(urls: Sequence[str], *, api_key: str | None, timeout: float) -> dict[str, VariantsDocument]:
    """Every server's /model/variants, by URL (a URL given twice counts once)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(headers=headers, timeout=timeout) as client:
        return {url: fetch(client, url) for url in dict.fromkeys(urls)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m registry_scripts.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "urls", nargs="*", metavar="URL", help=f"a server's base URL (default: {DEFAULT_URL})"
    )
    parser.add_argument("--api-key", help="sent as X-API-Key (default: the API_KEY environment variable)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print the merged document as JSON")
    parser.add_argument("--promote", action="store_true", help="promote the challenger to champion")
    parser.add_argument("--yes", action="store_true", help="with --promote: do not ask for confirmation")
    parser.add_argument("--tracking-uri", help="with --promote: the registry (default: MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    if args.yes and not args.promote:
        parser.error("--yes goes with --promote")
    args.urls = args.urls or [DEFAULT_URL]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    api_key = args.api_key or os.environ.get("API_KEY") or None
    comparison = merge(fetch_all(args.urls, api_key=api_key, timeout=args.timeout))
    print(comparison.model_dump_json(indent=2) if args.json else format_report(comparison), flush=True)
    if args.promote:
        plan_promotion(comparison)  # nothing to promote: say so before reaching for the registry
        tracking_uri = args.tracking_uri or RegistrySettings().mlflow_tracking_uri
        promote(comparison, MlflowClient(tracking_uri), assume_yes=args.yes)


if __name__ == "__main__":
    sys.exit(cli.run(main))
