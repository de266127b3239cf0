"""Pinning a scaling run: workers and wrk on separate physical cores, hardware threads counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cpu_topology import parse_cpu_list, physical_cores, pinning

SMT = [[0, 8], [1, 9], [2, 10], [3, 11], [4, 12], [5, 13], [6, 14], [7, 15]]


def test_the_kernels_cpu_lists_are_read() -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]


def test_threads_of_one_core_are_grouped(tmp_path: Path) -> None:
    usable = sorted(os.sched_getaffinity(0))
    pairs = [usable[i : i + 2] for i in range(0, len(usable), 2)]  # pretend each pair is one core
    for pair in pairs:
        for cpu in pair:
            topology = tmp_path / f"cpu{cpu}" / "topology"
            topology.mkdir(parents=True)
            (topology / "thread_siblings_list").write_text(",".join(map(str, pair)) + "\n")

    assert physical_cores(tmp_path) == pairs


def test_workers_get_a_thread_of_their_own_cores_and_wrk_the_other_half() -> None:
    assert pinning(4, SMT) == ("0,1,2,3", "4,12,5,13,6,14,7,15")


def test_more_workers_than_half_the_cores_cannot_be_pinned() -> None:
    with pytest.raises(ValueError, match="5 workers need 10 physical cores to pin; there are 8"):
        pinning(5, SMT)
