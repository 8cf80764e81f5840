"""Test harness: namespaces, our processes, captures and real peers."""

from __future__ import annotations

import shutil

import pytest

__all__ = ["require_tools"]


def require_tools(*names: str) -> None:
    """Skip the calling test when a program it needs is not installed."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (run scripts/install-test-deps)")
