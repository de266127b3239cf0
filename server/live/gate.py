"""The gate a new version must pass before it replaces the served one."""

from __future__ import annotations

from server.live.loaded_model import LoadedModel
from server.live.readiness import answers_example


class GateRefused(Exception):
    """The candidate is not fit to serve; the message says why, on one line."""


def _signature(model: LoadedModel) -> tuple[tuple[str, str], ...] | None:
    return None if model.features is None else tuple((f.name, f.type) for f in model.features)


def check_candidate(
    current: LoadedModel | None, candidate: LoadedModel, *, allow_signature_change: bool
) -> None:
    """Refuse a candidate whose inputs differ from the served contract, or that cannot answer
    its own logged input example."""
    if current is not None and not allow_signature_change:
        served, offered = _signature(current), _signature(candidate)
        if offered != served:
            raise GateRefused(_describe_change(served, offered))
    if candidate.example is None and candidate.runtime is None:
        raise GateRefused("the version logged no input example to check it with")
    try:
        answers_example(candidate)
        candidate.warm_up()
    except Exception as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise GateRefused(f"it fails on its own input example: {first}") from error


def _describe_change(
    served: tuple[tuple[str, str], ...] | None, offered: tuple[tuple[str, str], ...] | None
) -> str:
    if served is None or offered is None:
        return "its input signature differs from the one being served"
    served_names, offered_names = [n for n, _ in served], [n for n, _ in offered]
    missing = [n for n in served_names if n not in offered_names]
    added = [n for n in offered_names if n not in served_names]
    parts = []
    if missing:
        parts.append(f"drops {len(missing)} feature(s) ({', '.join(missing[:5])})")
    if added:
        parts.append(f"adds {len(added)} feature(s) ({', '.join(added[:5])})")
    retyped = [n for (n, t) in offered if (n, t) not in served and n in served_names]
    if retyped:
        parts.append(f"changes the type of {', '.join(retyped[:5])}")
    if not parts:
        parts.append("orders its features differently")
    return "its input signature differs from the served one: it " + "; ".join(parts)
