"""Shared pytest setup: root-only markers skip cleanly, namespace topology fixture."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests.harness` imports, whatever the rootdir or import mode
    sys.path.insert(0, str(ROOT))

from tests.harness.netns import Topology, remove_stale_netns  # noqa: E402

PRIVILEGED_MARKERS = ("netns", "peer", "vm")


def _privileged_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, mount namespaces, packet capture)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`); run scripts/install-test-deps"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove namespaces that crashed earlier runs left behind (their PID is gone)."""
    if _privileged_skip_reason() is None:
        remove_stale_netns()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _privileged_skip_reason()
    if reason is None:
        return
    for item in items:
        marks = [name for name in PRIVILEGED_MARKERS if item.get_closest_marker(name)]
        if marks:
            item.add_marker(pytest.mark.skip(reason=f"{'/'.join(marks)} test {reason}"))


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    """Namespaces and veth links of this test, always torn down afterwards."""
    topo = Topology(request.node.name)
    try:
        yield topo
    finally:
        topo.close()


@pytest.fixture
def tmp_work(tmp_path: Path) -> Path:
    """A work directory for configs, logs, sockets and captures (kept by pytest)."""
    work = tmp_path / "w"
    work.mkdir()
    return work
