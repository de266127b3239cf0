"""`registry_scripts.compare`: merging servers' /model/variants, the report, and promoting.

The merge tests are pure arithmetic on hand-made documents. The command-line tests run the script
as a subprocess against real server processes (`python -m server`) serving a real registry's
versions: one with authentication on and no challenger, two splitting their traffic with a
challenger (started once for the module), and one whose challenger the script promotes. The
in-process promotion tests move aliases in the session's real MLflow registry.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from registry_scripts import compare
from registry_scripts import comparison as merging
from registry_scripts.cli import CliError
from registry_scripts.processes import api_process, free_port
from registry_scripts.tracking_server import TrackingServer
from server.edge.credentials import digest
from tests.helpers import run_module, run_ok, wait_for
from tests.registry import FEATURES, champion_model, register_ours

MODEL = "breast-cancer-classifier"
LATENCY_BOUNDS: tuple[float | str, ...] = (0.001, 0.002, 0.004, "+Inf")
DIFFERENCE_BOUNDS: tuple[float | str, ...] = (0.01, 0.1, "+Inf")
ROWS = [{k: float(v) for k, v in row.items()} for _, row in FEATURES.iterrows()]
REQUESTS_PER_SERVER = 150
KEY = secrets.token_urlsafe(32)  # the one API key the locked server accepts


def buckets(bounds: tuple[float | str, ...], counts: tuple[int, ...]) -> list[dict[str, Any]]:
    return [{"le": le, "count": count} for le, count in zip(bounds, counts, strict=True)]


def stats(
    requests: int, errors: int, rows: int, classes: dict[str, int], latency: tuple[int, ...]
) -> dict[str, Any]:
    """A variant's stats; the percentiles are left wrong on purpose: the merge recomputes them."""
    return {
        "requests": requests,
        "errors": errors,
        "rows": rows,
        "classes": classes,
        "latency_seconds": {"p50": 9.0, "p90": 9.0, "p99": 9.0},
        "latency_buckets": buckets(LATENCY_BOUNDS, latency),
    }


def variant(
    which: str,
    version: str | None,
    *,
    name: str = MODEL,
    state: str = "serving",
    statistics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    served = version is not None
    return {
        "variant": which,
        "state": state,
        "model_uri": f"models:/{name}@{which}",
        "name": name if served else None,
        "version": version,
        "alias": which if served else None,
        "run_id": "0123abcd" if served else None,
        "loaded_at": "2026-11-29T20:00:00Z" if served else None,
        "runtime": "wrapper" if served else None,
        "last_reload_error": None,
        "stats": statistics,
    }


def shadow(version: str, scored: int, rows: int, same: int, differences: tuple[int, ...]) -> dict[str, Any]:
    return {
        "version": version,
        "requests": {"scored": scored, "dropped": 1, "failed": 0, "skipped": 2},
        "rows_compared": rows,
        "same_class": same,
        "agreement": same / rows if rows else None,
        "probability_difference": {"p50": 9.0, "p90": 9.0, "p99": 9.0},
        "probability_difference_buckets": buckets(DIFFERENCE_BOUNDS, differences),
    }


def document(
    *variants: dict[str, Any],
    mode: str = "split",
    percent: float = 20.0,
    shadow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"mode": mode, "percent": percent, "variants": list(variants), "shadow": shadow}


def merged(**documents: dict[str, Any]) -> merging.Comparison:
    return merging.merge(
        {f"http://{host}:8000": merging.VariantsDocument.model_validate(d) for host, d in documents.items()}
    )


SERVER_A = document(
    variant("champion", "3", statistics=stats(10, 1, 40, {"benign": 30, "malignant": 10}, (1, 4, 10, 10))),
    variant("challenger", "4", statistics=stats(4, 0, 4, {"benign": 4}, (0, 0, 4, 4))),
)
SERVER_B = document(
    variant("champion", "3", statistics=stats(10, 3, 60, {"benign": 20, "malignant": 40}, (1, 4, 9, 10))),
    variant("challenger", "4", statistics=stats(6, 2, 6, {"malignant": 6}, (0, 6, 6, 6))),
)


# --- Merging ---------------------------------------------------------------------------------------


def test_two_servers_merge_into_exact_sums() -> None:
    comparison = merged(a=SERVER_A, b=SERVER_B)
    assert comparison.notes == ()
    champion, challenger = comparison.variants
    assert (champion.variant, champion.version, champion.state) == ("champion", "3", "serving")
    assert [s.url for s in champion.servers] == ["http://a:8000", "http://b:8000"]
    assert champion.stats is not None
    assert (champion.stats.requests, champion.stats.errors, champion.stats.rows) == (20, 4, 100)
    assert champion.stats.classes == {"benign": 50, "malignant": 50}
    assert [(b.le, b.count) for b in champion.stats.latency_buckets] == [
        (0.001, 2),
        (0.002, 8),
        (0.004, 19),
        (float("inf"), 20),
    ]
    assert challenger.stats is not None
    assert (challenger.stats.requests, challenger.stats.errors, challenger.stats.rows) == (10, 2, 10)
    assert challenger.stats.classes == {"benign": 4, "malignant": 6}
    assert [r.model_dump() for r in comparison.routing] == [
        {"mode": "split", "percent": 20.0, "servers": ("http://a:8000", "http://b:8000")}
    ]


def test_percentiles_come_from_the_merged_buckets_like_histogram_quantile() -> None:
    champion = merged(a=SERVER_A, b=SERVER_B).variants[0]
    assert champion.stats is not None
    latency = champion.stats.latency_seconds
    # Merged cumulative counts 2, 8, 19, 20 at 1, 2, 4 ms, +Inf. p50: rank 10 falls in (2 ms, 4 ms],
    # which holds 19 - 8 = 11 observations, 10 - 8 = 2 of them up to the rank.
    assert latency.p50 == pytest.approx(0.002 + (0.004 - 0.002) * (10 - 8) / (19 - 8))
    assert latency.p90 == pytest.approx(0.002 + (0.004 - 0.002) * (18 - 8) / (19 - 8))
    # p99: rank 19.8 falls in the +Inf bucket: the highest finite bound.
    assert latency.p99 == 0.004


def test_histogram_quantile_edges() -> None:
    def b(*pairs: tuple[float, int]) -> list[merging.Bucket]:
        return [merging.Bucket(le=le, count=count) for le, count in pairs]

    inf = float("inf")
    # In the first bucket: interpolated from 0.
    assert merging.histogram_quantile(0.5, b((0.1, 4), (1.0, 4), (inf, 4))) == pytest.approx(0.05)
    # No observations, or no +Inf bucket: no estimate (Prometheus: NaN).
    assert merging.histogram_quantile(0.5, b((0.1, 0), (inf, 0))) is None
    assert merging.histogram_quantile(0.5, b((0.1, 1), (1.0, 2))) is None
    # Out of order and not monotonic, as Prometheus tolerates: counts 5, 5, 5 after its fix.
    assert merging.histogram_quantile(0.5, b((inf, 4), (1.0, 4), (0.1, 5))) == pytest.approx(0.05)
    # In the +Inf bucket: the highest finite bound.
    assert merging.histogram_quantile(0.9, b((0.1, 1), (1.0, 2), (inf, 10))) == 1.0


def test_a_variant_without_requests_has_no_percentiles() -> None:
    idle = document(variant("champion", "3", statistics=stats(0, 0, 0, {}, (0, 0, 0, 0))))
    champion = merged(a=idle, b=idle).variants[0]
    assert champion.stats is not None
    assert champion.stats.latency_seconds.model_dump() == {"p50": None, "p90": None, "p99": None}
    assert "-" in compare.format_report(merged(a=idle))


def test_servers_on_different_versions_are_separate_groups() -> None:
    newer = document(
        variant("champion", "3", statistics=stats(7, 0, 7, {"benign": 7}, (7, 7, 7, 7))),
        variant("challenger", "5", statistics=stats(2, 0, 2, {"benign": 2}, (0, 2, 2, 2))),
    )
    comparison = merged(a=SERVER_A, b=SERVER_B, c=newer)
    assert [(g.variant, g.version, len(g.servers)) for g in comparison.variants] == [
        ("champion", "3", 3),
        ("challenger", "4", 2),
        ("challenger", "5", 1),
    ]
    by_version = {g.version: g for g in comparison.groups("challenger")}
    assert by_version["4"].stats is not None
    assert by_version["4"].stats.requests == 10
    assert by_version["5"].stats is not None
    assert by_version["5"].stats.requests == 2
    assert comparison.notes == (
        "challenger: the servers serve different versions: "
        f"{MODEL} version 4 on http://a:8000, http://b:8000; {MODEL} version 5 on http://c:8000",
    )
    report = compare.format_report(comparison)
    assert report.startswith("warning: challenger: the servers serve different versions")
    assert report.splitlines()[2].split() == ["champion", "challenger", "(4)", "challenger", "(5)"]
    with pytest.raises(CliError, match="different challenger versions"):
        compare.plan_promotion(comparison)


def test_a_challenger_missing_on_a_server_is_named() -> None:
    only_champion = document(variant("champion", "3"), mode="off")
    comparison = merged(a=SERVER_A, b=only_champion)
    assert comparison.notes == (
        "challenger: not configured on http://b:8000",
        "the servers route differently: split 20% on http://a:8000; off on http://b:8000",
    )
    with pytest.raises(CliError, match="not serving on every server"):
        compare.plan_promotion(comparison)


def test_shadow_comparisons_sum_and_recompute_agreement_and_percentiles() -> None:
    a = document(
        variant("champion", "3"),
        variant("challenger", "4"),
        mode="shadow",
        shadow=shadow("4", 5, 20, 19, (10, 18, 20)),
    )
    b = document(
        variant("champion", "3"),
        variant("challenger", "4"),
        mode="shadow",
        shadow=shadow("4", 5, 20, 17, (0, 18, 20)),
    )
    (merged_shadow,) = merged(a=a, b=b).shadow
    assert merged_shadow.requests.model_dump() == {"scored": 10, "dropped": 2, "failed": 0, "skipped": 4}
    assert (merged_shadow.rows_compared, merged_shadow.same_class) == (40, 36)
    assert merged_shadow.agreement == pytest.approx(0.9)
    assert [b.count for b in merged_shadow.probability_difference_buckets] == [10, 36, 40]
    # p50: rank 20 in (0.01, 0.1], holding 26, 10 of them up to the rank; p90: rank 36, its end.
    assert merged_shadow.probability_difference.p50 == pytest.approx(0.01 + 0.09 * 10 / 26)
    assert merged_shadow.probability_difference.p90 == pytest.approx(0.1)
    assert merged_shadow.probability_difference.p99 == 0.1
    report = compare.format_report(merged(a=a, b=b))
    assert "shadow: challenger version 4 on 2 of 2 servers" in report
    assert "90.00% (36 of 40 rows in the same class)" in report


def test_differing_buckets_cannot_merge() -> None:
    odd = json.loads(json.dumps(SERVER_B))
    odd["variants"][0]["stats"]["latency_buckets"][0]["le"] = 0.0005
    with pytest.raises(CliError, match="different buckets"):
        merged(a=SERVER_A, b=odd)


def test_report_puts_the_variants_side_by_side() -> None:
    lines = compare.format_report(merged(a=SERVER_A, b=SERVER_B)).splitlines()
    rows = {line.split("  ")[0].strip(): line.split() for line in lines[1:] if line}
    assert lines[0].split() == ["champion", "challenger"]
    assert rows["version"] == ["version", "3", "4"]
    assert rows["requests"] == ["requests", "20", "10"]
    assert rows["error ratio"] == ["error", "ratio", "20.00%", "20.00%"]
    assert rows["class benign"] == ["class", "benign", "50.00%", "40.00%"]
    assert rows["latency p99"] == ["latency", "p99", "4.00", "ms", "3.95", "ms"]
    assert lines[-1] == "mode: split, the challenger answers 20% of routing keys"


def test_the_merged_document_is_json_with_prometheus_bucket_bounds() -> None:
    written = json.loads(merged(a=SERVER_A).model_dump_json())
    assert written["variants"][0]["stats"]["latency_buckets"][-1] == {"le": "+Inf", "count": 10}
    assert written["servers"] == ["http://a:8000"]


# --- The command line against real servers --------------------------------------------------------


def script_env(base_env: dict[str, str]) -> dict[str, str]:
    """The test registry's environment without an API_KEY of the caller's."""
    return {k: v for k, v in base_env.items() if k != "API_KEY"}


def variants_of(url: str, **headers: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/model/variants", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def by_variant(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["variant"]: v for v in answer["variants"]}


def challenger_serving(url: str, version: str = "2") -> bool:
    challenger = by_variant(variants_of(url)).get("challenger", {})
    return challenger.get("state") == "serving" and challenger.get("version") == version


def settings_for(name: str, **more: str) -> dict[str, str]:
    return {"MODEL_URI": f"models:/{name}@champion", "MODEL_POLL_SECONDS": "0.5", **more}


@pytest.fixture(scope="module")
def served_model(client_mlflow: MlflowClient) -> str:
    """The module's own model: v1 (logistic regression) on @champion, v2 (random forest) on
    @challenger. No test here moves its aliases."""
    name = champion_model(client_mlflow, "compare-served")
    assert register_ours(name, "random_forest") == "2"
    client_mlflow.set_registered_model_alias(name, "challenger", "2")
    return name


@pytest.fixture(scope="module")
def split_servers(
    base_env: dict[str, str], served_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two servers of `served_model`, each splitting its traffic 50/50 with the challenger."""
    logs = tmp_path_factory.mktemp("split")
    settings = settings_for(served_model, CHALLENGER_ALIAS="challenger", CHALLENGER_PERCENT="50")
    with (
        api_process(base_env, logs / "a.log", **settings) as a,
        api_process(base_env, logs / "b.log", **settings) as b,
    ):
        for server in (a, b):
            wait_for(lambda url=server.url: challenger_serving(url), 120, f"the challenger on {server.url}")
        yield a.url, b.url


@pytest.fixture(scope="module")
def locked_server(
    base_env: dict[str, str], served_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server of `served_model`'s champion alone (no CHALLENGER_ALIAS, though the registry has a
    @challenger) with authentication on: it accepts KEY, with the predict scope, and nothing else."""
    settings = settings_for(
        served_model,
        AUTH_ENABLED="true",
        API_KEYS=f"reader:{digest(KEY)}:predict",
        AUTH_FAILURES_PER_MINUTE="0",  # the tests send bad keys on purpose
    )
    with api_process(base_env, tmp_path_factory.mktemp("locked") / "api.log", **settings) as server:
        yield server.url


def test_unreachable_url_exits_with_one_line(base_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    result = run_module("registry_scripts.compare", url, env=script_env(base_env), timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"error: {url}: cannot reach the server")


def test_a_server_refusing_the_key_is_named_with_its_status(
    base_env: dict[str, str], locked_server: str
) -> None:
    env = script_env(base_env)
    refusal = f"error: {locked_server}: GET /model/variants answered 401 Unauthorized"
    for args, run_env in (
        ((), env),
        (("--api-key", "not-the-key"), env),
        ((), {**env, "API_KEY": "not-the-key"}),
    ):
        result = run_module("registry_scripts.compare", locked_server, *args, env=run_env, timeout=120)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.strip() == refusal, args


def test_the_key_comes_from_the_option_or_the_environment(
    base_env: dict[str, str], locked_server: str
) -> None:
    env = script_env(base_env)
    table = run_module("registry_scripts.compare", locked_server, "--api-key", KEY, env=env, timeout=120)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["champion"]
    assert table.stdout.splitlines()[-1] == "mode: off"
    written = json.loads(
        run_ok("registry_scripts.compare", locked_server, "--json", env={**env, "API_KEY": KEY})
    )
    assert written["servers"] == [locked_server]
    assert [(v["variant"], v["state"], v["version"]) for v in written["variants"]] == [
        ("champion", "serving", "1")
    ]
    # The option wins over the environment.
    run_ok("registry_scripts.compare", locked_server, "--api-key", KEY, env={**env, "API_KEY": "wrong"})


def test_two_servers_merge_into_the_sums_of_what_they_answered(
    base_env: dict[str, str], split_servers: tuple[str, str]
) -> None:
    answered: dict[str, Counter[str]] = {}
    labels: dict[str, Counter[tuple[str, str]]] = {}
    for server, url in zip("ab", split_servers, strict=True):
        answered[url], labels[url] = Counter(), Counter()
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(REQUESTS_PER_SERVER):
                response = http.post(
                    "/predict", json=ROWS[i % len(ROWS)], headers={"X-Routing-Key": f"{server}-{i}"}
                )
                assert response.status_code == 200, response.text
                which = response.headers["x-model-variant"]
                answered[url][which] += 1
                labels[url][which, response.json()["label"]] += 1
    for url in split_servers:
        # A 50% split of 150 keys: both variants answer some.
        assert set(answered[url]) == {"champion", "challenger"}, answered[url]
        wait_for(
            lambda url=url: (
                {v["variant"]: v["stats"]["requests"] for v in variants_of(url)["variants"]}
                == dict(answered[url])
            ),
            30,
            f"{url} counting what it answered",
        )
    documents = [by_variant(variants_of(url)) for url in split_servers]
    result = run_module("registry_scripts.compare", *split_servers, "--json", env=script_env(base_env))
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert written["servers"] == list(split_servers)
    assert written["notes"] == []
    assert written["routing"] == [{"mode": "split", "percent": 50.0, "servers": list(split_servers)}]
    merged_variants = {v["variant"]: v for v in written["variants"]}
    assert [(v["variant"], v["version"], v["state"]) for v in written["variants"]] == [
        ("champion", "1", "serving"),
        ("challenger", "2", "serving"),
    ]
    for which, group in merged_variants.items():
        assert [s["url"] for s in group["servers"]] == list(split_servers)
        sent = sum(answered[url][which] for url in split_servers)
        numbers = group["stats"]
        assert (numbers["requests"], numbers["errors"], numbers["rows"]) == (sent, 0, sent)
        summed: Counter[str] = Counter()
        for document in documents:
            summed.update(document[which]["stats"]["classes"])
        assert group["stats"]["classes"] == dict(summed)
        # Each answer is one row in the class it named.
        named: Counter[str] = Counter()
        for url in split_servers:
            named.update({label: n for (w, label), n in labels[url].items() if w == which})
        assert summed == named
        assert [b["count"] for b in group["stats"]["latency_buckets"]] == [
            sum(counts)
            for counts in zip(
                *(
                    [b["count"] for b in document[which]["stats"]["latency_buckets"]]
                    for document in documents
                ),
                strict=True,
            )
        ]
    assert sum(v["stats"]["requests"] for v in written["variants"]) == 2 * REQUESTS_PER_SERVER


def test_nothing_to_promote_without_a_challenger(
    base_env: dict[str, str], locked_server: str, served_model: str, client_mlflow: MlflowClient
) -> None:
    result = run_module(
        "registry_scripts.compare",
        locked_server,
        "--api-key",
        KEY,
        "--promote",
        "--yes",
        env=script_env(base_env),
    )
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == "error: nothing to promote: no challenger is configured"
    # The registry's @challenger is not the servers': it stays where it was.
    assert aliases(client_mlflow, served_model) == {"champion": "1", "challenger": "2"}


# --- Promotion in the real registry -----------------------------------------------------------------


@pytest.fixture
def two_versions(client_mlflow: MlflowClient) -> str:
    """A registered model of this test's own: version 1 on @champion, version 2 on @challenger."""
    name = champion_model(client_mlflow, "compare")
    register_ours(name)
    client_mlflow.set_registered_model_alias(name, "challenger", "2")
    return name


def served_by_two(name: str) -> dict[str, merging.VariantsDocument]:
    """Two servers' answers while champion 1 and challenger 2 of `name` serve."""
    answer = document(variant("champion", "1", name=name), variant("challenger", "2", name=name))
    return {
        url: merging.VariantsDocument.model_validate(answer) for url in ("http://a:8000", "http://b:8000")
    }


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).aliases)


def test_promote_moves_the_champion_and_clears_the_challenger(
    two_versions: str, client_mlflow: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    comparison = merging.merge(served_by_two(two_versions))
    move = compare.promote(comparison, client_mlflow, assume_yes=True)
    assert (move.previous, move.current) == ("1", "2")
    assert aliases(client_mlflow, two_versions) == {"champion": "2"}
    assert capsys.readouterr().out.splitlines() == [
        f"promote: move {two_versions}@champion from 1 to 2 and clear @challenger",
        f"{two_versions}@champion: 1 -> 2",
        f"{two_versions}@challenger: 2 -> unset",
    ]


def test_declining_changes_nothing(
    two_versions: str, client_mlflow: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    comparison = merging.merge(served_by_two(two_versions))
    asked: list[str] = []
    with pytest.raises(CliError, match="not promoted: declined"):
        compare.promote(comparison, client_mlflow, assume_yes=False, ask=lambda q: asked.append(q) or "n")
    assert asked == ["proceed? [y/N] "]
    monkeypatch.setattr(sys, "stdin", io.StringIO("nope\n"))
    with pytest.raises(CliError, match="not promoted: declined"):
        compare.promote(comparison, client_mlflow, assume_yes=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no answer at all
    with pytest.raises(CliError, match="not promoted: declined"):
        compare.promote(comparison, client_mlflow, assume_yes=False)
    assert aliases(client_mlflow, two_versions) == {"champion": "1", "challenger": "2"}


def test_promote_refuses_when_the_registry_moved_since(
    two_versions: str, client_mlflow: MlflowClient
) -> None:
    comparison = merging.merge(served_by_two(two_versions))
    register_ours(two_versions)
    client_mlflow.set_registered_model_alias(two_versions, "challenger", "3")
    with pytest.raises(
        CliError, match=rf"{two_versions}@challenger is 3 in the registry but the servers serve 2"
    ):
        compare.promote(comparison, client_mlflow, assume_yes=True)
    assert aliases(client_mlflow, two_versions) == {"champion": "1", "challenger": "3"}


def test_cli_promote_yes_end_to_end(
    two_versions: str,
    client_mlflow: MlflowClient,
    tracking_server: TrackingServer,
    base_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in script_env(base_env).items() if k != "MLFLOW_TRACKING_URI"}
    settings = settings_for(two_versions, CHALLENGER_ALIAS="challenger", CHALLENGER_PERCENT="50")
    with api_process(base_env, tmp_path / "api.log", **settings) as server:
        wait_for(lambda: challenger_serving(server.url), 120, "the challenger loaded")
        declined = subprocess.run(
            [
                sys.executable,
                "-m",
                "registry_scripts.compare",
                server.url,
                "--promote",
                "--tracking-uri",
                tracking_server.url,
            ],
            env=env,
            input="n\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert declined.returncode == 1, declined.stderr
        assert declined.stderr.strip() == "error: not promoted: declined"
        assert aliases(client_mlflow, two_versions) == {"champion": "1", "challenger": "2"}
        result = run_module(
            "registry_scripts.compare",
            server.url,
            "--promote",
            "--yes",
            env={**env, "MLFLOW_TRACKING_URI": tracking_server.url},
        )
        assert result.returncode == 0, result.stderr
        assert f"promote: move {two_versions}@champion from 1 to 2 and clear @challenger" in result.stdout
        assert aliases(client_mlflow, two_versions) == {"champion": "2"}
        # The server follows the registry: version 2 is the champion, and no challenger is left.
        wait_for(
            lambda: (
                [(v["variant"], v["state"], v["version"]) for v in variants_of(server.url)["variants"]]
                == [("champion", "serving", "2"), ("challenger", "absent", None)]
            ),
            60,
            "the server on the promoted champion",
        )
    # Recorded like `registry_scripts.promote`, so its --rollback undoes the move.
    rollback = run_module(
        "registry_scripts.promote",
        "--rollback",
        env={**env, "MLFLOW_TRACKING_URI": tracking_server.url, "MODEL_NAME": two_versions},
    )
    assert rollback.returncode == 0, rollback.stderr
    assert aliases(client_mlflow, two_versions) == {"champion": "1"}
