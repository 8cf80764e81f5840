"""Build the Linux client VM image: a stock Debian kernel and an initramfs root filesystem.

The guest runs the stock Linux L2TP/IPsec client stack: strongSwan (charon, IKEv1), xl2tpd
in kernel mode and pppd with the kernel's L2TP, PPP and ESP modules. Nothing of the guest is
installed on the host: the kernel package is fetched with `apt-get download` and unpacked
with `dpkg-deb -x`; the rootfs comes from `debootstrap` against the Debian mirror this
machine's apt configuration names. Booted with qemu's PVH entry (uncompressed ELF vmlinux).

Stages are cached under the cache dir (default /var/cache/pyl2tp-linuxvm, env
PYL2TP_VM_CACHE), each in a directory named after a hash of its recipe:

    kernel-<key>/   linux-image.deb, vmlinux, release      (package name + version)
    modules-<key>/  modules.cpio, modules.txt             (kernel + module lists)
    rootfs-<key>/   base.cpio, packages.txt                (suite, mirrors, packages)
    image-<key>/    vmlinux, initrd.img, info.json         (all of the above + guest_init.sh)

A stage is built in `<dir>.tmp-<pid>` and renamed into place, so a crash leaves no half
stage; a lock file serialises builders. `python -m tests.harness.linuxvm.build [--force]`
builds from the command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BOOT_MODULES", "CACHE_ENV", "DEFAULT_CACHE", "ROOTFS_PACKAGES", "ImageUnavailable",
    "Mirrors", "VMImage", "apt_sources", "cache_dir", "ensure_image", "extract_vmlinux",
    "find_mirrors", "missing_tools", "resolve_modules",
]

log = logging.getLogger("pyl2tp.tests.linuxvm")

DEFAULT_CACHE = Path("/var/cache/pyl2tp-linuxvm")
CACHE_ENV = "PYL2TP_VM_CACHE"
RECIPE_VERSION = 2  # bump when the build steps change in a way the lists below don't show
SUITE = "bookworm"
KERNEL_META = "linux-image-amd64"
GUEST_INIT = Path(__file__).with_name("guest_init.sh")
STALE_AFTER = 3600.0  # seconds: other recipes' stages unused this long are removed

# The client stack as a default desktop install of network-manager-l2tp brings it
# (strongswan + its Recommends; libcharon-extra-plugins is only Suggested), plus tools.
ROOTFS_PACKAGES = (
    "strongswan", "strongswan-charon", "strongswan-starter", "strongswan-swanctl",
    "libstrongswan-standard-plugins", "libcharon-extauth-plugins",
    "xl2tpd", "ppp", "iproute2", "iputils-ping", "kmod", "busybox", "netbase", "procps",
    "tcpdump",
)

# Loaded by the guest's /init before it reports ready (~2 s under TCG).
BOOT_MODULES = (
    "virtio_pci", "virtio_net", "virtio_rng", "9pnet_virtio", "9p",
    "l2tp_ppp", "l2tp_netlink", "l2tp_ip", "pppox", "ppp_generic", "ppp_async",
    "ppp_synctty", "esp4", "ah4", "xfrm_user", "af_key", "authenc", "echainiv", "tun",
)
# Shipped, loaded on demand by the kernel's own modprobe calls.
EXTRA_MODULES = (
    "l2tp_eth", "ppp_deflate", "bsd_comp", "ppp_mppe", "slhc", "esp4_offload", "ipcomp",
    "xfrm4_tunnel", "xfrm_interface", "esp6", "ah6", "veth", "dummy",
)
# Every module under these is shipped too: an ESP SA needs the default RNG (drbg,
# jitterentropy) and whatever crypto templates the kernel picks, or the SA install fails
# with ENOENT although the named algorithms exist (peers/linuxvm/README.md, gotcha 2).
SHIP_DIRS = (
    "kernel/crypto", "kernel/arch/x86/crypto", "kernel/lib/crypto", "kernel/net/xfrm",
    "kernel/net/key", "kernel/net/l2tp", "kernel/drivers/net/ppp", "kernel/net/ipv4",
    "kernel/net/ipv6",
)
# What a test VM never needs (glob patterns); removed from the rootfs before packing.
TRIM = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian",
    "usr/share/locale", "usr/share/bug", "usr/share/common-licenses",
    "usr/share/zoneinfo/right", "var/cache/apt", "var/lib/apt/lists", "var/log/apt",
    "usr/lib/modules", "var/cache/debconf/*-old", "var/log/*.log",
    "usr/lib/x86_64-linux-gnu/gconv/*.so",
)

# program -> Debian package providing it (scripts/install-test-deps installs them)
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86", "debootstrap": "debootstrap", "cpio": "cpio",
    "depmod": "kmod", "dpkg-deb": "dpkg", "apt-get": "apt", "chroot": "coreutils",
    "ip": "iproute2",
}
XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"
MODULE_SUFFIX = re.compile(r"\.ko(\.xz|\.zst|\.gz)?$")
FETCH_TIMEOUT = 900.0


class ImageUnavailable(RuntimeError):
    """This machine cannot build the image (missing tool, no mirror, download failed)."""


@dataclass(frozen=True, slots=True)
class Mirrors:
    """Debian archive URIs from the host's apt configuration."""

    main: str
    security: str | None
    updates: str | None


@dataclass(frozen=True, slots=True)
class VMImage:
    """A built image: what qemu boots."""

    kernel: Path
    """Uncompressed ELF vmlinux (PVH entry)."""
    initrd: Path
    """Concatenated uncompressed cpio archives: rootfs, modules, overlay (/init)."""
    kernel_release: str
    key: str
    directory: Path


def cache_dir() -> Path:
    """The cache directory: $PYL2TP_VM_CACHE or /var/cache/pyl2tp-linuxvm."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def missing_tools() -> list[str]:
    """Host programs the build or the boot needs that are absent, as 'prog (package)'."""
    return [f"{prog} ({pkg})" for prog, pkg in HOST_TOOLS.items() if shutil.which(prog) is None]


def _key(*parts: object) -> str:
    blob = json.dumps([RECIPE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- apt configuration

def _one_line_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    """(uri, [suite]) of each `deb` line of a sources.list file."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield words[0], [words[1]]


def _deb822_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of each enabled `Types: deb` stanza of a .sources file."""
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.lstrip().startswith("#") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower().startswith("no"):
            continue
        uris = fields.get("uris", "").split()
        if uris:
            yield uris[0], fields.get("suites", "").split()


def apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[tuple[str, list[str]]]:
    """(uri, suites) of every enabled binary source, in apt's file order."""
    found: list[tuple[str, list[str]]] = []
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            found.extend(_one_line_sources(path.read_text(errors="replace")))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        found.extend(_deb822_sources(path.read_text(errors="replace")))
    return found


def find_mirrors(suite: str = SUITE, apt_dir: Path = Path("/etc/apt")) -> Mirrors:
    """The URIs serving `suite`, `suite`-security and `suite`-updates; no host is built in.

    PYL2TP_VM_MIRROR overrides the main one. Raises ImageUnavailable without a `suite` source.
    """
    sources = apt_sources(apt_dir)

    def first(name: str) -> str | None:
        return next((uri for uri, suites in sources if name in suites), None)

    main = os.environ.get("PYL2TP_VM_MIRROR") or first(suite)
    if main is None:
        raise ImageUnavailable(
            f"no enabled 'deb' source for suite {suite} in {apt_dir}/sources.list(.d): the VM "
            f"rootfs comes from a Debian {suite} mirror (or set PYL2TP_VM_MIRROR)")
    return Mirrors(main, first(f"{suite}-security"), first(f"{suite}-updates"))


# ---------------------------------------------------------------- commands

def _run(argv: Sequence[str], *, what: str, fetch: bool = False, timeout: float = 600,
         log_to: Path | None = None, **kw: object) -> str:
    """Run a command; its stdout. On failure raise ImageUnavailable (a fetch) or
    RuntimeError, quoting the last lines of its output."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                             env=env, check=False, **kw)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired as exc:
        err: type[RuntimeError] = ImageUnavailable if fetch else RuntimeError
        raise err(f"{what}: timed out after {timeout:g}s") from exc
    if log_to is not None:
        with open(log_to, "a") as f:
            f.write(f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}\n")
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
        err = ImageUnavailable if fetch else RuntimeError
        raise err(f"{what} failed (exit {res.returncode}): {tail}")
    out: str = res.stdout
    return out


def _kernel_package() -> tuple[str, str]:
    """(package, version) of the kernel: what linux-image-amd64 depends on (or
    PYL2TP_VM_KERNEL_PKG), from the apt lists; runs apt-get update once if they lack it."""
    def lookup() -> tuple[str, str] | None:
        pkg = os.environ.get("PYL2TP_VM_KERNEL_PKG")
        if not pkg:
            deps = subprocess.run(["apt-cache", "depends", KERNEL_META], capture_output=True,
                                  text=True, check=False).stdout
            m = re.search(r"Depends:\s+(linux-image-\S+)", deps)
            pkg = m.group(1) if m else None
        policy = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True,
                                check=False).stdout if pkg else ""
        m = re.search(r"Candidate:\s+(\S+)", policy)
        return (pkg, m.group(1)) if pkg and m and m.group(1) != "(none)" else None

    found = lookup()
    if found is None:
        log.info("no kernel package in the apt lists: apt-get update")
        _run(["apt-get", "update", "-q"], what="apt-get update", fetch=True)
        found = lookup()
    if found is None:
        raise ImageUnavailable(f"apt has no candidate for {KERNEL_META} (no Debian {SUITE} "
                               "main source in the apt configuration?)")
    return found


# ---------------------------------------------------------------- kernel

def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage whose payload is xz (as scripts/extract-vmlinux)."""
    at = bzimage.find(XZ_MAGIC)
    while at >= 0:
        try:
            elf = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(bzimage[at:])
        except lzma.LZMAError:
            elf = b""
        if elf.startswith(ELF_MAGIC):
            return elf
        at = bzimage.find(XZ_MAGIC, at + 1)
    raise RuntimeError("no xz-compressed ELF kernel in the bzImage")


def _build_kernel(dest: Path, pkg: str, version: str) -> None:
    """kernel-<key>/: the .deb, the ELF vmlinux and the release string."""
    with contextlib.suppress(KeyError, OSError):
        shutil.chown(dest, "_apt")  # apt-get download drops to _apt for the fetch
    log.info("downloading %s %s (apt-get download; not installed on this host)", pkg, version)
    for attempt in (1, 2):
        try:
            _run(["apt-get", "download", "-q", f"{pkg}={version}"], fetch=True, cwd=dest,
                 what=f"apt-get download {pkg}", timeout=FETCH_TIMEOUT)
            break
        except ImageUnavailable:
            if attempt == 2:
                raise
            _run(["apt-get", "update", "-q"], what="apt-get update", fetch=True)  # stale lists
    shutil.chown(dest, "root")
    debs = sorted(dest.glob("*.deb"))
    if len(debs) != 1:
        raise RuntimeError(f"apt-get download left {len(debs)} .deb files in {dest}")
    deb = debs[0].rename(dest / "linux-image.deb")
    found: tuple[str, bytes] | None = None
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                          stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                m = re.fullmatch(r"\./boot/vmlinuz-(\S+)", member.name)
                f = tar.extractfile(member) if m and member.isfile() else None
                if m and f is not None:
                    found = (m.group(1), f.read())
                    break
        proc.stdout.close()
        proc.kill()
    if found is None:
        raise RuntimeError(f"{pkg}: no /boot/vmlinuz-* in the package")
    # PVH boot of the ELF skips the real-mode setup and the in-kernel xz decompressor,
    # seconds under TCG (peers/linuxvm/README.md, gotcha 7).
    (dest / "vmlinux").write_bytes(extract_vmlinux(found[1]))
    (dest / "release").write_text(found[0] + "\n")


# ---------------------------------------------------------------- modules

def _module_name(path: str) -> str:
    return MODULE_SUFFIX.sub("", path.rsplit("/", 1)[-1]).replace("-", "_")


def resolve_modules(modules_dep: str, builtin: str, wanted: Iterable[str]
                    ) -> tuple[list[str], list[str]]:
    """Files (relative to the module dir) for `wanted` and all their dependencies, and the
    wanted names that are neither modules nor built in. Built-in names need no file.

    `modules_dep` is depmod's modules.dep (each line lists every dependency already).
    """
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in modules_dep.splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[_module_name(path)] = (path, rest.split())
    builtins = {_module_name(line.strip()) for line in builtin.splitlines() if line.strip()}
    files: dict[str, None] = {}
    missing: list[str] = []
    for name in wanted:
        norm = name.replace("-", "_")
        if norm in deps:
            path, needs = deps[norm]
            files.update(dict.fromkeys([*needs, path]))
        elif norm not in builtins:
            missing.append(name)
    return list(files), missing


def _build_modules(dest: Path, deb: Path, release: str) -> None:
    """modules-<key>/modules.cpio: the wanted modules, everything under SHIP_DIRS, deps."""
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        tree = Path(tmp) / "x"
        _run(["dpkg-deb", "-x", str(deb), str(tree)], what="dpkg-deb -x (kernel)")
        mdir = tree / "lib" / "modules" / release
        if not (mdir / "modules.dep").is_file():
            _run(["depmod", "-b", str(tree), release], what="depmod (kernel package)")
        wanted = [*BOOT_MODULES, *EXTRA_MODULES]
        for sub in SHIP_DIRS:
            wanted.extend(sorted(_module_name(p.name) for p in (mdir / sub).rglob("*.ko*")))
        builtin_path = mdir / "modules.builtin"
        builtin = builtin_path.read_text() if builtin_path.is_file() else ""
        files, missing = resolve_modules((mdir / "modules.dep").read_text(), builtin,
                                         dict.fromkeys(wanted))
        if missing:
            log.info("not in kernel %s (skipped): %s", release, " ".join(missing))
        # Modules go under usr/lib: bookworm's /lib is a symlink to usr/lib, and a real
        # "lib" directory in a later cpio part would replace that link.
        stage = Path(tmp) / "stage"
        target = stage / "lib" / "modules" / release
        for rel in files:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(mdir / rel, target / rel)
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (mdir / name).is_file():
                shutil.copy2(mdir / name, target / name)
        _run(["depmod", "-b", str(stage), release], what="depmod (shipped modules)")
        (stage / "usr").mkdir()
        (stage / "lib").rename(stage / "usr" / "lib")
        _write_cpio(stage, dest / "modules.cpio", root_owned=True)
        loaded = [m for m in BOOT_MODULES if m not in missing]
        (dest / "modules.txt").write_text(
            f"boot: {' '.join(loaded)}\nfiles: {len(files)}\nmissing: {' '.join(missing)}\n")


# ---------------------------------------------------------------- rootfs

def _build_rootfs(dest: Path, mirrors: Mirrors, debs: Path) -> None:
    """rootfs-<key>/base.cpio: debootstrap minbase + the client stack, security updates."""
    root = dest / "root"
    logfile = dest.parent / "rootfs-build.log"  # outside the stage: kept after a failure
    logfile.write_text("")
    include = ",".join(sorted(ROOTFS_PACKAGES))
    log.info("debootstrap --variant=minbase %s from %s (~30-60 s)", SUITE, mirrors.main)
    debs.mkdir(parents=True, exist_ok=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={include}",
              f"--cache-dir={debs}", SUITE, str(root), mirrors.main],
             what=f"debootstrap {SUITE} from {mirrors.main} (log {logfile})", fetch=True,
             log_to=logfile, timeout=FETCH_TIMEOUT)
    finally:  # debootstrap mounts /proc and /sys in the target while it works
        _umount_below(root)
    suites = ((mirrors.main, SUITE), (mirrors.updates, f"{SUITE}-updates"),
              (mirrors.security, f"{SUITE}-security"))
    (root / "etc" / "apt" / "sources.list").write_text(
        "".join(f"deb {uri} {suite} main\n" for uri, suite in suites if uri))
    if mirrors.security or mirrors.updates:
        # No service may start in the chroot: it would run in the host's namespaces.
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        _run(["chroot", str(root), "sh", "-c",
              "apt-get update -q && apt-get -y -q -o Dpkg::Options::=--force-confold upgrade"
              " && apt-get clean"],
             what=f"apt-get upgrade from {SUITE}-security/-updates in the rootfs (log {logfile})",
             fetch=True, log_to=logfile, timeout=FETCH_TIMEOUT)
        policy.unlink()
    packages = _run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Package} ${Version}\\n"],
                    what="dpkg-query in the rootfs")
    (dest / "packages.txt").write_text(packages)
    for pattern in TRIM:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    (root / "usr" / "share" / "doc").mkdir(exist_ok=True)
    shadow = root / "etc" / "shadow"
    shadow.write_text(re.sub(r"^root:[^:]*:", "root::", shadow.read_text(), flags=re.M))
    (root / "etc" / "fstab").write_text("")
    _write_cpio(root, dest / "base.cpio", root_owned=False)
    shutil.rmtree(root)
    shutil.copy2(logfile, dest / "debootstrap.log")


def _umount_below(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    prefix = str(root.resolve()) + "/"
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)


# ---------------------------------------------------------------- packing

def _write_cpio(tree: Path, out: Path, *, root_owned: bool) -> None:
    """A newc cpio of `tree` (sorted, reproducible), padded to 4 bytes: the kernel looks for
    the next concatenated archive only at 4-byte aligned offsets."""
    names: list[bytes] = []
    base = os.fsencode(tree)
    for dirpath, dirnames, filenames in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        names += [b"./" + os.path.normpath(os.path.join(rel, n)) for n in [*dirnames, *filenames]]
    names.sort()
    argv = ["cpio", "--null", "-o", "-H", "newc", "--reproducible", "--quiet"]
    if root_owned:
        argv += ["-R", "0:0"]
    with open(out, "wb") as f:
        subprocess.run(argv, input=b"\0".join(names) + b"\0", stdout=f, cwd=tree, check=True)
    size = out.stat().st_size
    if size % 4:
        os.truncate(out, size + 4 - size % 4)


def _overlay(stage: Path, boot_modules: Sequence[str], release: str) -> None:
    """The small last cpio part: /init (guest_init.sh) and what it reads."""
    for d in ("etc/pyl2tp-vm", "sb/in", "sb/out"):
        (stage / d).mkdir(parents=True)
    init = stage / "init"
    init.write_bytes(GUEST_INIT.read_bytes())
    init.chmod(0o755)
    (stage / "etc" / "pyl2tp-vm" / "modules.boot").write_text("\n".join(boot_modules) + "\n")
    (stage / "etc" / "pyl2tp-vm" / "release").write_text(release + "\n")


def _assemble(dest: Path, kernel: Path, modules: Path, rootfs: Path, info: dict[str, object]
              ) -> None:
    """image-<key>/: vmlinux and initrd.img = rootfs + modules + overlay."""
    release = (kernel / "release").read_text().strip()
    boot = (modules / "modules.txt").read_text().splitlines()[0].removeprefix("boot: ").split()
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        _overlay(Path(tmp) / "ov", boot, release)
        _write_cpio(Path(tmp) / "ov", dest / "overlay.cpio", root_owned=True)
    with open(dest / "initrd.img", "wb") as out:
        for part in (rootfs / "base.cpio", modules / "modules.cpio", dest / "overlay.cpio"):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    try:
        os.link(kernel / "vmlinux", dest / "vmlinux")
    except OSError:
        shutil.copy2(kernel / "vmlinux", dest / "vmlinux")
    (dest / "overlay.cpio").unlink()
    (dest / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- cache

@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:  # closing the file releases the lock
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _stage(cache: Path, name: str) -> Iterator[Path]:
    """A fresh `<name>.tmp-<pid>` directory renamed to `name` when the block succeeds."""
    final = cache / name
    tmp = cache / f"{name}.tmp-{os.getpid()}"
    if tmp.exists():
        _umount_below(tmp)
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _umount_below(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(final)


def _prune(cache: Path, keep: set[str]) -> None:
    """Remove other recipes' stages (and leftovers of dead builds) unused for an hour."""
    now = time.time()
    for path in cache.iterdir():
        m = re.fullmatch(r"(kernel|modules|rootfs|image)-[0-9a-f]{16}(\.tmp-(\d+))?", path.name)
        if m is None or path.name in keep or not path.is_dir():
            continue
        if m.group(3) is not None and Path(f"/proc/{m.group(3)}").exists():
            continue  # another build in progress
        if m.group(3) is None and now - path.stat().st_mtime < STALE_AFTER:
            continue
        _umount_below(path)
        shutil.rmtree(path, ignore_errors=True)


def ensure_image(cache: Path | None = None, *, force: bool = False) -> VMImage:
    """Build (or find cached) the VM image and return it.

    Raises ImageUnavailable with a precise reason when this machine cannot build it (not
    root, a missing tool, no Debian mirror in the apt configuration, a failed download).
    """
    if os.geteuid() != 0:
        raise ImageUnavailable("building the VM image needs root (debootstrap, chroot)")
    missing = missing_tools()
    if missing:
        raise ImageUnavailable(f"not installed: {', '.join(missing)} "
                               "(run scripts/install-test-deps)")
    cache = (cache or cache_dir()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        mirrors = find_mirrors()
        pkg, version = _kernel_package()
        kkey = _key("kernel", pkg, version)
        mkey = _key("modules", kkey, BOOT_MODULES, EXTRA_MODULES, SHIP_DIRS)
        rkey = _key("rootfs", SUITE, mirrors.main, mirrors.security, mirrors.updates,
                    sorted(ROOTFS_PACKAGES), TRIM)
        ikey = _key("image", mkey, rkey, hashlib.sha256(GUEST_INIT.read_bytes()).hexdigest())
        names = {f"kernel-{kkey}", f"modules-{mkey}", f"rootfs-{rkey}", f"image-{ikey}"}
        image = cache / f"image-{ikey}"
        if force:
            for name in names:
                shutil.rmtree(cache / name, ignore_errors=True)
        if not image.is_dir():
            started = time.monotonic()
            kernel, modules, rootfs = (cache / f"kernel-{kkey}", cache / f"modules-{mkey}",
                                       cache / f"rootfs-{rkey}")
            if not kernel.is_dir():
                with _stage(cache, kernel.name) as tmp:
                    _build_kernel(tmp, pkg, version)
            release = (kernel / "release").read_text().strip()
            if not modules.is_dir():
                with _stage(cache, modules.name) as tmp:
                    _build_modules(tmp, kernel / "linux-image.deb", release)
            if not rootfs.is_dir():
                with _stage(cache, rootfs.name) as tmp:
                    _build_rootfs(tmp, mirrors, cache / "debs")
            info: dict[str, object] = {
                "kernel_package": f"{pkg} {version}", "kernel_release": release,
                "mirrors": [mirrors.main, mirrors.security, mirrors.updates],
                "modules": (modules / "modules.txt").read_text(),
                "packages": [line for line in (rootfs / "packages.txt").read_text().splitlines()
                             if line.split(" ")[0] in ROOTFS_PACKAGES],
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            with _stage(cache, image.name) as tmp:
                _assemble(tmp, kernel, modules, rootfs, info)
            log.info("VM image %s built in %.0f s", image, time.monotonic() - started)
        for name in names:
            os.utime(cache / name)
        _prune(cache, names)
        release = json.loads((image / "info.json").read_text())["kernel_release"]
        return VMImage(image / "vmlinux", image / "initrd.img", str(release), ikey, image)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the image (into $PYL2TP_VM_CACHE or the default); print where it is."""
    force = "--force" in (sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        image = ensure_image(force=force)
    except ImageUnavailable as exc:
        print(f"cannot build: {exc}", file=sys.stderr)
        return 2
    print(f"kernel {image.kernel}\ninitrd {image.initrd}\nrelease {image.kernel_release}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
