"""Fixtures of the interop tests with real peers."""

from __future__ import annotations

import os

import pytest

from tests.harness import require_tools
from tests.harness.strongswan import CHARON


@pytest.fixture
def need_charon() -> None:
    """Skip unless strongSwan's charon (with kernel-libipsec) can run here, as root."""
    require_tools("swanctl", "ip", "unshare")
    if not os.path.exists(CHARON) or os.geteuid() != 0:
        pytest.skip("needs root and strongswan-charon + libcharon-extra-plugins")
