"""`server/`'s layout: entry points at the top, a few packages, and imports that point one way
(`routes -> codecs, inference -> live -> runtimes -> model_wrapper`), with the edge, metrics and
the process beside that chain. A new import against the grain fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"
TOP_LEVEL = {"__init__", "__main__", "app", "settings", "services", "errors"}
# package -> the server packages (and top-level modules) it may import
ALLOWED: dict[str, set[str]] = {
    "runtimes": set(),
    "live": {"runtimes", "errors", "observe"},
    "codecs": {"live", "runtimes", "errors"},
    "inference": {"codecs", "live", "runtimes", "errors", "observe", "edge"},
    "routes": {
        "codecs",
        "inference",
        "live",
        "runtimes",
        "errors",
        "edge",
        "observe",
        "services",
        "settings",
    },
    "edge": {"errors", "observe", "settings"},
    "observe": set(),
    "process": {"edge", "observe", "settings"},
    # gRPC endpoints are routes over another transport: they record answers as routes do.
    "grpc": {"codecs", "inference", "live", "errors", "edge", "observe", "routes", "services"},
}


def _imported_server_parts(path: Path) -> set[str]:
    """The first part after `server.` of every module `path` imports (type-only imports too)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "server" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def test_the_top_level_holds_entry_points_and_packages_only() -> None:
    modules = {path.stem for path in SERVER.glob("*.py")}
    packages = {path.parent.name for path in SERVER.glob("*/__init__.py")}
    assert modules == TOP_LEVEL
    assert packages == set(ALLOWED)


def test_imports_point_one_way() -> None:
    against_the_grain = []
    for package, allowed in ALLOWED.items():
        for path in sorted((SERVER / package).rglob("*.py")):
            for part in sorted(_imported_server_parts(path) - allowed - {package}):
                against_the_grain.append(f"{path.relative_to(SERVER.parent)} imports server.{part}")
    assert against_the_grain == []


def test_the_model_wrapper_knows_nothing_of_the_server() -> None:
    wrapper = SERVER.parent / "model_wrapper"
    offenders = [
        str(p.name)
        for p in wrapper.glob("*.py")
        if _imported_server_parts(p) or "import server" in p.read_text()
    ]
    assert offenders == []
