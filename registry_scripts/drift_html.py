"""The drift report as one self-contained HTML page: what `registry_scripts.drift_report` writes.

Self-contained because the page is read where it is found: a file passed around, an artifact shown
by the MLflow UI, an air-gapped cluster. So the style is inline, the charts are SVG drawn here, and
there is no script and no URL at all (a Content-Security-Policy says so to the browser as well).
Every piece of text from outside (feature and class names, the model's name) is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

PSI_ALERT = 0.2  # above this a feature is highlighted: the usual reading of a shift worth a look

CHART_WIDTH = 360
CHART_HEIGHT = 110

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1100px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #d0d7de;text-align:left;
vertical-align:middle}th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}dt{color:#59636e}dd{margin:0}
tr.alert td{background:#fff1f0}tr.alert td.psi{color:#b42318;font-weight:700}
.note{padding:8px 12px;background:#fff8c5;border:1px solid #d4a72c;border-radius:4px;margin:12px 0}
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
svg{display:block}rect.t,.key.t{fill:#8c959f;background:#8c959f}rect.l,.key.l{fill:#0969da;background:#0969da}
svg text{font-size:10px;fill:#59636e}line{stroke:#8c959f}
"""


@dataclass(frozen=True)
class FeatureDrift:
    """One feature: its bins, the share of training and live values in each, and the statistics
    (None without a reference profile, and then `training` is None too)."""

    name: str
    bins: tuple[str, ...]
    training: tuple[float, ...] | None
    live: tuple[float, ...]
    psi: float | None
    ks: float | None


@dataclass(frozen=True)
class ClassMix:
    """One predicted class: live rows and share, and its share of the training rows (None: unknown)."""

    label: str
    live_rows: int
    live_share: float | None
    training_share: float | None


@dataclass(frozen=True)
class Report:
    """Everything the page shows about one model version's window of the prediction log."""

    model_name: str
    version: str
    since: str
    start: datetime
    end: datetime
    rows: int
    rows_with_features: int
    reference: str  # where the training reference came from, or why there is none
    has_reference: bool
    features: tuple[FeatureDrift, ...]  # highest PSI first
    classes: tuple[ClassMix, ...]

    @property
    def max_psi(self) -> FeatureDrift | None:
        scored = [f for f in self.features if f.psi is not None]
        return max(scored, key=lambda f: f.psi or 0.0) if scored else None

    @property
    def drifting(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.psi is not None and f.psi > PSI_ALERT]

    def summary(self) -> str:
        """One line: what the MLflow run's description says."""
        head = f"Drift of {self.model_name} v{self.version} over {self.since}: {self.rows} rows"
        top = self.max_psi
        if not self.has_reference or top is None:
            return f"{head}; no reference profile ({self.reference}), no PSI or KS."
        return (
            f"{head}; max PSI {top.psi:.3f} ({top.name}), "
            f"{len(self.drifting)} of {len(self.features)} features over {PSI_ALERT}."
        )


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def chart(feature: FeatureDrift) -> str:
    """Bars per bin, training (grey) beside live (blue), scaled to the tallest; a tooltip per bar."""
    series = [("t", "training", feature.training)] if feature.training is not None else []
    series.append(("l", "live", feature.live))
    top = max([max(shares, default=0.0) for _, _, shares in series] + [1e-12])
    plot = CHART_HEIGHT - 14  # room for the scale's label
    group = CHART_WIDTH / max(len(feature.bins), 1)
    width = (group - 2) / len(series)
    bars = []
    for i, label in enumerate(feature.bins):
        for k, (css, title, shares) in enumerate(series):
            height = shares[i] / top * plot
            x = i * group + 1 + k * width
            tip = f"{label}: {title} {_percent(shares[i])}"
            bars.append(
                f'<rect class="{css}" x="{x:.1f}" y="{CHART_HEIGHT - height:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}"><title>{escape(tip)}</title></rect>'
            )
    return (
        f'<svg width="{CHART_WIDTH}" height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
        f'role="img" aria-label="{escape(feature.name, quote=True)}: share of values per bin">'
        f'<text x="2" y="10">{_percent(top)}</text>'
        f'<line x1="0" y1="{CHART_HEIGHT - 0.5}" x2="{CHART_WIDTH}" y2="{CHART_HEIGHT - 0.5}"/>'
        + "".join(bars)
        + "</svg>"
    )


def _header(report: Report) -> str:
    items = [
        ("model", report.model_name),
        ("version", report.version),
        ("window", f"the last {report.since}: {_time(report.start)} to {_time(report.end)}"),
        ("rows", str(report.rows)),
        ("rows with features", str(report.rows_with_features)),
        ("reference", report.reference),
    ]
    top = report.max_psi
    if top is not None:
        items.append(("max PSI", f"{top.psi:.4f} ({top.name})"))
        items.append((f"features over {PSI_ALERT}", f"{len(report.drifting)} of {len(report.features)}"))
    cells = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f"<dl>{cells}</dl>"


def _classes(classes: Sequence[ClassMix]) -> str:
    if not classes:
        return "<p>No predicted classes were logged.</p>"
    rows = "".join(
        f'<tr><td>{escape(c.label)}</td><td class="n">{c.live_rows}</td>'
        f'<td class="n">{_percent(c.live_share)}</td><td class="n">{_percent(c.training_share)}</td></tr>'
        for c in classes
    )
    head = "<tr><th>class</th><th>live rows</th><th>live share</th><th>training share</th></tr>"
    return f"<table>{head}{rows}</table>"


def _features(report: Report) -> str:
    if not report.features:
        return "<p>No feature values were logged.</p>"
    rows = []
    for f in report.features:
        alert = f.psi is not None and f.psi > PSI_ALERT
        rows.append(
            f"<tr{' class=alert' if alert else ''}><td>{escape(f.name)}</td>"
            f'<td class="n psi">{_number(f.psi)}</td><td class="n">{_number(f.ks)}</td>'
            f"<td>{chart(f)}</td></tr>"
        )
    if report.has_reference:
        legend = (
            '<p><span class="key t"></span>training <span class="key l"></span>live, share of values in'
            f" each training decile; PSI above {PSI_ALERT} is highlighted.</p>"
        )
    else:
        legend = '<p><span class="key l"></span>live, share of values in equal-width bins.</p>'
    head = "<tr><th>feature</th><th>PSI</th><th>KS</th><th>histogram</th></tr>"
    return legend + f"<table>{head}{''.join(rows)}</table>"


def render(report: Report) -> str:
    """The page, as text (UTF-8 when written)."""
    title = f"Drift: {report.model_name} v{report.version}"
    note = (
        ""
        if report.has_reference
        else f'<p class="note">No reference profile: {escape(report.reference)}. '
        "Live histograms and the class mix only; no PSI or KS.</p>"
    )
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{escape(title)}</h1>{note}{_header(report)}\n"
        f"<h2>Class mix</h2>{_classes(report.classes)}\n"
        f"<h2>Features</h2>{_features(report)}\n"
        "</body></html>\n"
    )
