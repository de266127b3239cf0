"""`registry_scripts.drift_report`: the prediction log read back against the training profile.

The command-line tests run the script as a subprocess on a SQLite prediction log made here with
the server's own migrations (the script itself only reads the table), against the session's real
tracking server: the champion version's run carries the reference profile training logs. The
report's run is then looked up in the monitoring experiment and its artifact downloaded back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from registry_scripts.dataset import load_frame
from registry_scripts.drift_html import ClassMix, FeatureDrift, Report, render
from registry_scripts.drift_report import REPORT_ARTIFACT, VERSION_TAG, parse_duration, sqlalchemy_url
from server.observe.prediction_log.database import open_engine
from server.observe.prediction_log.migrate import prepare
from server.observe.prediction_log.schema import predictions
from tests.helpers import run_module, run_ok

MODEL = "breast-cancer-classifier"
SHIFTED = ("feature_1", "feature_2", "feature_3")
LIVE_ROWS = 600


def row(features: dict[str, float] | None, at: datetime, version: str, **overrides: Any) -> dict[str, Any]:
    """One logged prediction, as the server's writer stores it."""
    return {
        "row_key": uuid.uuid4().hex,
        "logged_at": at,
        "request_id": uuid.uuid4().hex,
        "row_index": 0,
        "route": "/predict",
        "model_name": MODEL,
        "model_version": version,
        "variant": "champion",
        "features": features,
        "predicted_class": "benign",
        "probabilities": None,
        "latency_ms": 1.5,
        "caller": None,
        **overrides,
    }


def live_rows(count: int, at: datetime, version: str, shift: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`count` rows of the breast-cancer data (cycled), `shift` features moved up by 3 standard
    deviations, predicted as their true class."""
    frame, target, class_names = load_frame()
    moved = frame.copy()
    for name in shift:
        moved[name] = moved[name] + 3 * frame[name].std()
    records = moved.to_dict(orient="records")
    return [
        row(
            {k: float(v) for k, v in records[i % len(records)].items()},
            at,
            version,
            predicted_class=class_names[int(target.iloc[i % len(records)])],
        )
        for i in range(count)
    ]


def make_log(path: Path, rows: list[dict[str, Any]]) -> str:
    url = f"sqlite:///{path}"
    engine = open_engine(url)
    prepare(engine, migrate=True)
    with engine.begin() as connection:
        connection.execute(predictions.insert(), rows)
    engine.dispose()
    return url


# --- In process ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("24h", 86400), ("7d", 604800), ("90s", 90), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "-1h", "3y", "1 day"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_bare_postgresql_url_means_psycopg() -> None:
    assert sqlalchemy_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert sqlalchemy_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_page_escapes_names_and_links_nowhere() -> None:
    hostile = '<script>alert("x")</script>'
    now = datetime.now(UTC)
    report = Report(
        model_name=hostile,
        version="1",
        since="24h",
        start=now - timedelta(hours=24),
        end=now,
        rows=3,
        rows_with_features=3,
        reference="none",
        has_reference=False,
        features=(FeatureDrift(hostile, ("[0, 1)", "[1, 2)"), None, (0.25, 0.75), None, None),),
        classes=(ClassMix(hostile, 3, 1.0, None),),
    )
    page = render(report)
    assert "<script" not in page
    assert "://" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert "No reference profile" in page


# --- The command ---------------------------------------------------------------------------------


def test_report_of_a_shifted_version_is_logged_and_downloadable(
    tmp_path: Path, base_env: dict[str, str], champion_version: str, client_mlflow: MlflowClient
) -> None:
    now = datetime.now(UTC)
    rows = live_rows(LIVE_ROWS, now - timedelta(minutes=5), champion_version, shift=SHIFTED)
    # Outside the window (3 days old) and wildly off: must not count.
    rows += live_rows(100, now - timedelta(days=3), champion_version, shift=("feature_10",) * 5)
    url = make_log(tmp_path / "predictions.db", rows)
    output = tmp_path / "reports"
    env = {**base_env, "MODEL_NAME": MODEL}

    out = run_ok(
        "registry_scripts.drift_report",
        *("--since", "24h", "--version", champion_version, "--log-url", url, "--output", str(output)),
        env=env,
    )

    lines = out.splitlines()
    assert len(lines) == 1, out
    path, run_id = lines[0].split("\t")
    page = Path(path).read_text(encoding="utf-8")
    assert Path(path).parent == output
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page
    assert "no reference profile" not in page.lower()
    for name in SHIFTED:  # highlighted, and ahead of every feature that did not move
        assert f"<tr class=alert><td>{name}</td>" in page
    assert page.count("<tr class=alert>") == len(SHIFTED)
    assert max(page.index(f"<td>{n}</td>") for n in SHIFTED) < page.index("<td>feature_10</td>")
    assert "malignant" in page
    assert "benign" in page

    run = client_mlflow.get_run(run_id)
    experiment = client_mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == f"{MODEL}-monitoring"
    assert run.info.run_name.startswith(f"drift-{MODEL}-v{champion_version}-")
    assert run.data.tags["model_name"] == MODEL
    assert run.data.tags["model_version"] == champion_version
    assert run.data.tags["drift.since"] == "24h"
    assert "max PSI" in run.data.tags["mlflow.note.content"]
    metrics = run.data.metrics
    assert metrics["rows"] == LIVE_ROWS
    assert metrics["rows_with_features"] == LIVE_ROWS
    for name in SHIFTED:
        assert metrics[f"psi.{name}"] > 0.2
        assert metrics[f"ks.{name}"] > 0.5
    assert metrics["psi.feature_10"] < 0.1
    assert metrics["ks.feature_10"] < 0.2
    assert metrics["features_over_0_2"] == len(SHIFTED)
    assert metrics["max_psi"] == max(v for k, v in metrics.items() if k.startswith("psi."))
    assert 0 < metrics["class_share.benign"] < 1

    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=REPORT_ARTIFACT, dst_path=str(tmp_path / "download")
    )
    assert Path(downloaded).read_bytes() == Path(path).read_bytes()
    version = client_mlflow.get_model_version(MODEL, champion_version)
    assert version.tags[VERSION_TAG] == run_id


def test_rows_before_the_window_and_of_other_models_are_left_out(
    tmp_path: Path, base_env: dict[str, str], champion_version: str, client_mlflow: MlflowClient
) -> None:
    now = datetime.now(UTC)
    rows = live_rows(50, now - timedelta(minutes=10), champion_version)
    rows.append(row(None, now - timedelta(minutes=1), champion_version, predicted_class=None))
    rows += live_rows(70, now - timedelta(hours=2), champion_version)
    rows += [{**r, "model_name": "another-model"} for r in live_rows(30, now, champion_version)]
    url = make_log(tmp_path / "predictions.db", rows)

    # No --version: every version of the model logged in the window (here, the one).
    out = run_ok(
        "registry_scripts.drift_report",
        *("--since", "1h", "--log-url", url, "--output", str(tmp_path)),
        env={**base_env, "MODEL_NAME": MODEL},
    )

    (line,) = out.splitlines()
    run = client_mlflow.get_run(line.split("\t")[1])
    assert run.data.tags["model_version"] == champion_version
    assert run.data.metrics["rows"] == 51
    assert run.data.metrics["rows_with_features"] == 50


def test_a_version_without_a_profile_gets_live_histograms_only(
    tmp_path: Path, model_env: dict[str, str], client_mlflow: MlflowClient
) -> None:
    name = model_env["MODEL_NAME"]
    experiment = client_mlflow.create_experiment(f"{name}-training")
    source = client_mlflow.create_run(experiment)
    client_mlflow.create_registered_model(name)
    version = client_mlflow.create_model_version(
        name, f"runs:/{source.info.run_id}/model", run_id=source.info.run_id
    ).version
    rows = [{**r, "model_name": name} for r in live_rows(40, datetime.now(UTC), str(version))]
    url = make_log(tmp_path / "predictions.db", rows)

    out = run_ok("registry_scripts.drift_report", "--log-url", url, "--output", str(tmp_path), env=model_env)

    path, run_id = out.split("\t")
    page = Path(path).read_text(encoding="utf-8")
    assert "No reference profile" in page
    assert "<td>feature_30</td>" in page
    run = client_mlflow.get_run(run_id)
    assert client_mlflow.get_experiment(run.info.experiment_id).name == f"{name}-monitoring"
    assert run.data.metrics["rows"] == 40
    assert not any(k.startswith(("psi.", "ks.")) or k == "max_psi" for k in run.data.metrics)
    assert "no reference profile" in run.data.tags["mlflow.note.content"]


def test_an_unknown_version_is_a_one_line_error(
    tmp_path: Path, base_env: dict[str, str], champion_version: str
) -> None:
    url = make_log(tmp_path / "predictions.db", live_rows(5, datetime.now(UTC), champion_version))

    result = run_module(
        "registry_scripts.drift_report",
        *("--version", "9999", "--log-url", url, "--output", str(tmp_path / "out")),
        env={**base_env, "MODEL_NAME": MODEL},
    )

    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {MODEL} has no version 9999 in the registry"
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_no_rows_in_the_window_is_an_error(
    tmp_path: Path, base_env: dict[str, str], champion_version: str
) -> None:
    old = live_rows(5, datetime.now(UTC) - timedelta(days=2), champion_version)
    url = make_log(tmp_path / "predictions.db", old)

    result = run_module(
        "registry_scripts.drift_report",
        *("--log-url", url, "--no-mlflow", "--output", str(tmp_path)),
        env={**base_env, "MODEL_NAME": MODEL},
    )

    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no predictions of {MODEL} logged in the last 24h ({url})"
