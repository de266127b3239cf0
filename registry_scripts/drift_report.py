"""Write a drift report for a model's versions from the prediction log, and log it to MLflow.

    python -m registry_scripts.drift_report                      # every version logged in the last 24h
    python -m registry_scripts.drift_report --since 7d --version 3
    python -m registry_scripts.drift_report --log-url sqlite:///.data/predictions.db --no-mlflow

For each version of MODEL_NAME with rows in the window (or the one --version), the rows are read
from the prediction log (--log-url, default PREDICTION_LOG_URL) and compared with the version's
training reference profile (`reference_profile.json` of its run, see
`model_wrapper.reference_profile`): per feature PSI over the training deciles and the KS statistic,
and the class mix. One self-contained HTML page per version goes to --output, and is logged with
the numbers as metrics to a run of the monitoring experiment (--experiment, default
`<MODEL_NAME>-monitoring`), tagged with the model's name and version; the model version gets the tag
`drift.last_report_run`, so the report is found from the model. Prints per version the page's path
and, tab-separated, the run id.

The log is read in pages (`registry_scripts.prediction_log_reader`) and kept only as bin counts,
so a long window costs time, not memory. A version whose run has no profile still gets live
histograms (equal-width bins: a second pass over the window, once its range is known) and the
class mix, and no PSI or KS.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Engine, make_url

from model_wrapper.reference_profile import (
    PROFILE_ARTIFACT,
    ProfileError,
    ReferenceProfile,
    ks_statistic,
    psi,
)
from registry_scripts import cli
from registry_scripts.config import RegistrySettings
from registry_scripts.drift_html import ClassMix, FeatureDrift, Report, render
from registry_scripts.prediction_log_reader import (
    Page,
    Window,
    feature_matrix,
    logged_versions,
    number,
    open_window,
    pages,
    sqlalchemy_url,
)

LIVE_BINS = 20  # equal-width bins of the live histogram when there is no training reference
REPORT_ARTIFACT = "drift_report.html"
VERSION_TAG = "drift.last_report_run"
DEFAULT_SINCE = "24h"
DEFAULT_OUTPUT = Path("drift-reports")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`30m`, `24h`, `7d`, `2w`, `90s`; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"expected a duration such as 30m, 24h or 7d, got {text!r}")
    return timedelta(seconds=float(match[1]) * _SECONDS[match[2]])


# --- Counting ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What every report counts: rows, rows with usable features (every feature of the profile;
    without one, any features at all), predicted classes."""

    rows: int = 0
    with_features: int = 0
    classes: Counter[str] = field(default_factory=Counter)

    def add(self, page: Page) -> None:
        self.rows += len(page)
        self.classes.update(str(c) for _, c in page if c is not None)


def profiled(
    read: Callable[[], Iterator[Page]], profile: ReferenceProfile
) -> tuple[Tally, list[FeatureDrift]]:
    """One pass: live counts in each feature's PSI bins and KS grid. As the server's drift does,
    only rows carrying every feature of the profile count towards PSI and KS."""
    tally = Tally()
    psi_counts = [np.zeros(f.psi_bin_count, dtype=np.int64) for f in profile.features]
    grid_counts = [np.zeros(f.grid_bin_count, dtype=np.int64) for f in profile.features]
    for page in read():
        tally.add(page)
        matrix = feature_matrix(page, profile.feature_names)
        matrix = matrix[np.isfinite(matrix).all(axis=1)]
        tally.with_features += len(matrix)
        for j, feature in enumerate(profile.features):
            psi_counts[j] += np.bincount(feature.psi_bins(matrix[:, j]), minlength=feature.psi_bin_count)
            grid_counts[j] += np.bincount(feature.grid_bins(matrix[:, j]), minlength=feature.grid_bin_count)
    drifts = []
    for feature, live, grid in zip(profile.features, psi_counts, grid_counts, strict=True):
        training = feature.bin_counts / feature.bin_counts.sum()
        seen = live.sum() > 0
        drifts.append(
            FeatureDrift(
                name=feature.name,
                bins=_decile_labels(feature.bin_edges),
                training=tuple(training.tolist()),
                live=tuple((live / live.sum()).tolist()) if seen else (0.0,) * len(live),
                psi=psi(feature.bin_counts, live) if seen else None,
                ks=ks_statistic(feature, grid) if seen else None,
            )
        )
    return tally, drifts


def _decile_labels(edges: np.ndarray) -> tuple[str, ...]:
    bounds = [f"{e:.4g}" for e in edges.tolist()]
    inner = [f"({low}, {high}]" for low, high in pairwise(bounds)]
    return (f"≤ {bounds[0]}", *inner, f"> {bounds[-1]}")


def unprofiled(read: Callable[[], Iterator[Page]]) -> tuple[Tally, list[FeatureDrift]]:
    """Two passes: the features' names and ranges, then LIVE_BINS equal-width bins over each range."""
    tally = Tally()
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for page in read():
        tally.add(page)
        for doc, _ in page:
            if not isinstance(doc, dict):
                continue
            tally.with_features += 1
            for name, value in doc.items():
                found = number(value)
                if np.isfinite(found):
                    low[name] = min(low.get(name, found), found)
                    high[name] = max(high.get(name, found), found)
    names = sorted(low, key=_natural)
    edges = {
        n: np.linspace(low[n], high[n] if high[n] > low[n] else low[n] + 1, LIVE_BINS + 1) for n in names
    }
    counts = {n: np.zeros(LIVE_BINS, dtype=np.int64) for n in names}
    for page in read() if names else ():
        matrix = feature_matrix(page, names)
        for j, name in enumerate(names):
            column = matrix[:, j][np.isfinite(matrix[:, j])]
            bins = np.clip(np.searchsorted(edges[name], column, side="right") - 1, 0, LIVE_BINS - 1)
            counts[name] += np.bincount(bins, minlength=LIVE_BINS)
    drifts = []
    for name in names:
        bounds = [f"{e:.4g}" for e in edges[name].tolist()]
        total = counts[name].sum()
        drifts.append(
            FeatureDrift(
                name=name,
                bins=tuple(f"[{a}, {b})" for a, b in pairwise(bounds)),
                training=None,
                live=tuple((counts[name] / max(total, 1)).tolist()),
                psi=None,
                ks=None,
            )
        )
    return tally, drifts


def _natural(name: str) -> list[Any]:
    """feature_2 before feature_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def class_mix(tally: Tally, profile: ReferenceProfile | None) -> tuple[ClassMix, ...]:
    """The profile's classes in its order, then classes only the live rows have."""
    live = tally.classes
    training = profile.class_shares() if profile is not None else {}
    labels = list(dict.fromkeys([*training, *sorted(live)]))
    total = sum(live.values())
    return tuple(
        ClassMix(label, live[label], live[label] / total if total else None, training.get(label))
        for label in labels
    )


# --- The registry and MLflow ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A version as the registry knows it: its run and profile, or why there is none."""

    registered: bool
    run_id: str | None
    profile: ReferenceProfile | None
    missing: str | None

    def describe(self) -> str:
        if self.profile is not None:
            return f"{PROFILE_ARTIFACT} of run {self.run_id} ({self.profile.rows} training rows)"
        return self.missing or "none"


def reference(client: MlflowClient, model_name: str, version: str, *, required: bool) -> Reference:
    """The version's training reference. CliError when `required` and the registry lacks the version."""
    try:
        found = client.get_model_version(model_name, version)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        if required:
            raise cli.CliError(f"{model_name} has no version {version} in the registry") from None
        return Reference(False, None, None, f"version {version} is not in the registry")
    run_id = found.run_id
    if not run_id:
        return Reference(True, None, None, "the version was not registered from a run")
    if PROFILE_ARTIFACT not in {a.path for a in client.list_artifacts(run_id)}:
        return Reference(True, run_id, None, f"run {run_id} has no {PROFILE_ARTIFACT}")
    try:
        profile = ReferenceProfile.from_dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/{PROFILE_ARTIFACT}"))
    except ProfileError as error:
        return Reference(True, run_id, None, f"{PROFILE_ARTIFACT} of run {run_id} is unusable: {error}")
    return Reference(True, run_id, profile, None)


def _metric_key(text: str) -> str:
    return re.sub(r"[^\w.\- /]", "_", text)


def metrics(report: Report) -> dict[str, float]:
    """The report's numbers: rows, per feature PSI and KS, their summary, the live class shares."""
    numbers: dict[str, float] = {"rows": report.rows, "rows_with_features": report.rows_with_features}
    for f in report.features:
        if f.psi is not None and f.ks is not None:
            numbers[_metric_key(f"psi.{f.name}")] = f.psi
            numbers[_metric_key(f"ks.{f.name}")] = f.ks
    top = report.max_psi
    if top is not None:
        numbers["max_psi"] = top.psi or 0.0
        numbers["features_over_0_2"] = len(report.drifting)
    for c in report.classes:
        if c.live_share is not None:
            numbers[_metric_key(f"class_share.{c.label}")] = c.live_share
    return numbers


def log_run(report: Report, page: str, ref: Reference, experiment: str, client: MlflowClient) -> str:
    """A run in `experiment` holding the page and the numbers; the version tagged with it. Its id."""
    stamp = report.end.strftime("%Y%m%dT%H%M%SZ")
    tags = {
        "model_name": report.model_name,
        "model_version": report.version,
        "drift.since": report.since,
        "drift.window_start": report.start.isoformat(),
        "drift.window_end": report.end.isoformat(),
        "drift.reference": ref.describe(),
        "mlflow.note.content": report.summary(),
    }
    # MLflow prints run links on stdout; stdout carries only the report paths and run ids.
    with contextlib.redirect_stdout(sys.stderr):
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=f"drift-{report.model_name}-v{report.version}-{stamp}") as run:
            mlflow.set_tags(tags)
            mlflow.log_metrics(metrics(report))
            mlflow.log_text(page, REPORT_ARTIFACT)
    if ref.registered:
        client.set_model_version_tag(report.model_name, report.version, VERSION_TAG, run.info.run_id)
    return run.info.run_id


# --- The command ---------------------------------------------------------------------------------


def build_report(
    engine: Engine, model_name: str, version: str, window: Window, since: str, ref: Reference
) -> Report:
    def read() -> Iterator[Page]:
        return pages(engine, model_name, version, window)

    if ref.profile is not None:
        tally, features = profiled(read, ref.profile)
        features.sort(key=lambda f: -1.0 if f.psi is None else f.psi, reverse=True)
    else:
        tally, features = unprofiled(read)
    return Report(
        model_name=model_name,
        version=version,
        since=since,
        start=window.start,
        end=window.end,
        rows=tally.rows,
        rows_with_features=tally.with_features,
        reference=ref.describe(),
        has_reference=ref.profile is not None,
        features=tuple(features),
        classes=class_mix(tally, ref.profile),
    )


def write(report: Report, page: str, output: Path) -> Path:
    stamp = report.end.strftime("%Y%m%dT%H%M%SZ")
    model = re.sub(r"[^\w.-]", "_", report.model_name)
    path = output / f"drift-{model}-v{report.version}-{stamp}.html"
    output.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _version(text: str) -> str:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a version number, got {text!r}")
    return str(int(text))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m registry_scripts.drift_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--since", default=DEFAULT_SINCE, help="the window: 30m, 24h, 7d... (default: 24h)")
    parser.add_argument("--version", type=_version, help="one version (default: every one in the window)")
    parser.add_argument("--log-url", help="the prediction log's database (default: PREDICTION_LOG_URL)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="folder for the pages (default: %(default)s)"
    )
    parser.add_argument("--experiment", help="MLflow experiment (default: <MODEL_NAME>-monitoring)")
    parser.add_argument("--no-mlflow", action="store_true", help="write the pages, log nothing to MLflow")
    args = parser.parse_args(argv)
    try:
        args.window = parse_duration(args.since)
    except ValueError as error:
        parser.error(f"argument --since: {error}")
    args.since = args.since.strip()
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = RegistrySettings()
    url = args.log_url or os.environ.get("PREDICTION_LOG_URL", "")
    if not url.strip():
        raise cli.CliError("no prediction log: pass --log-url or set PREDICTION_LOG_URL")
    url = sqlalchemy_url(url)
    shown = make_url(url).render_as_string(hide_password=True)
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).is_file():
            raise cli.CliError(f"{shown}: no such database file")
    if settings.mlflow_tracking_uri:
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    name = settings.model_name
    known: dict[str, Reference] = {}
    if args.version is not None:  # an unknown version: say so before reading the log
        known[args.version] = reference(client, name, args.version, required=True)
    engine = sa.create_engine(url)
    try:
        window = open_window(engine, args.window, datetime.now(UTC))
        versions = [args.version] if args.version is not None else logged_versions(engine, name, window)
        if not versions:
            raise cli.CliError(f"no predictions of {name} logged in the last {args.since} ({shown})")
        for version in versions:
            ref = known.get(version) or reference(client, name, version, required=False)
            report = build_report(engine, name, version, window, args.since, ref)
            if report.rows == 0:
                raise cli.CliError(f"no predictions of {name} v{version} logged in the last {args.since}")
            page = render(report)
            path = write(report, page, args.output)
            if args.no_mlflow:
                print(path, flush=True)
                continue
            experiment = args.experiment or f"{name}-monitoring"
            print(f"{path}\t{log_run(report, page, ref, experiment, client)}", flush=True)
    except sa.exc.SQLAlchemyError as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise cli.CliError(f"cannot read the prediction log at {shown}: {detail}") from None
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(cli.run(main))
