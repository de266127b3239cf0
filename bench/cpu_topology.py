"""Which logical CPUs share a physical core, for pinning a scaling run (Linux sysfs).

Two hardware threads of one core share its execution units: a worker pinned beside a wrk thread
on one core is not a worker with a core of its own. So `bench.scaling --pin` gives each worker
the first thread of a physical core and wrk whole cores of the other half, and records the
topology beside the results.
"""

from __future__ import annotations

import os
from pathlib import Path

SYSFS_CPUS = Path("/sys/devices/system/cpu")


def parse_cpu_list(text: str) -> list[int]:
    """`0-3,8,10-11` (the kernel's and taskset's list format) -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def physical_cores(root: Path = SYSFS_CPUS) -> list[list[int]]:
    """This process's usable logical CPUs, grouped by physical core, cores in order of their first CPU."""
    usable = os.sched_getaffinity(0)
    groups: dict[tuple[int, ...], list[int]] = {}
    for cpu in sorted(usable):
        siblings_file = root / f"cpu{cpu}" / "topology" / "thread_siblings_list"
        siblings = parse_cpu_list(siblings_file.read_text()) if siblings_file.exists() else [cpu]
        key = tuple(sorted(siblings))
        groups.setdefault(key, [c for c in key if c in usable])
    return sorted(groups.values(), key=lambda group: group[0])


def pinning(workers: int, cores: list[list[int]]) -> tuple[str, str]:
    """(server CPUs, wrk CPUs) as taskset lists: one thread of each of the first `workers`
    physical cores for the server, every thread of the second half of the cores for wrk."""
    half = len(cores) // 2
    if workers > half:
        raise ValueError(
            f"{workers} workers need {2 * workers} physical cores to pin; there are {len(cores)}"
        )
    server = [group[0] for group in cores[:workers]]
    load = [cpu for group in cores[half:] for cpu in group]
    return ",".join(map(str, server)), ",".join(map(str, load))


def describe(cores: list[list[int]]) -> dict[str, object]:
    """The topology as recorded with the results."""
    return {
        "logical_cpus": sum(len(group) for group in cores),
        "physical_cores": len(cores),
        "threads_per_core": max(len(group) for group in cores),
    }
