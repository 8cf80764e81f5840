"""The stock Linux L2TP/IPsec client in a qemu VM: Debian kernel, strongSwan, xl2tpd, pppd.

`ensure_image()` builds (once, cached) a stock Debian bookworm kernel plus an initramfs with
the client stack; `LinuxVM` boots it on a TAP device inside a test namespace and runs a
shell script there. See build.py and vm.py; peers/linuxvm/README.md has the measured facts.
"""

from __future__ import annotations

import pytest

from .. import require_tools
from .build import ImageUnavailable, VMImage, cache_dir, ensure_image, missing_tools
from .vm import GUEST_IN, GUEST_OUT, LinuxVM, VMResult, choose_accel

__all__ = [
    "GUEST_IN",
    "GUEST_OUT",
    "ImageUnavailable",
    "LinuxVM",
    "VMImage",
    "VMResult",
    "cache_dir",
    "choose_accel",
    "ensure_image",
    "missing_tools",
    "require_image",
]


def require_image() -> VMImage:
    """The VM image (built once, then cached); skips the calling test, saying why, when this
    machine cannot build it (a missing tool, no Debian mirror, a failed download)."""
    require_tools("qemu-system-x86_64", "debootstrap", "cpio", "depmod", "dpkg-deb")
    try:
        return ensure_image()
    except ImageUnavailable as exc:
        pytest.skip(f"Linux VM image unavailable: {exc}")
