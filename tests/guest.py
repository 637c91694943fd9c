"""Tiny QEMU guests for the tests: Debian's kernel plus busybox-static in an initramfs.

The initramfs is written here (newc cpio, no external tools) with the virtio-net
modules the kernel needs and an /init that runs the test's shell script, prints its
output on the serial console and powers off.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from vdetest import need, need_tool

MODULES = ["virtio_pci", "virtio_net"]
DONE = "PYVDE-GUEST-DONE"


def kernel() -> tuple[Path, Path]:
    """(vmlinuz, modules directory) of an installed Debian kernel."""
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        release = vmlinuz.split("vmlinuz-", 1)[1]
        moddir = Path("/lib/modules") / release
        if (moddir / "modules.dep").exists() and os.access(vmlinuz, os.R_OK):
            return Path(vmlinuz), moddir
    need(False, "a Debian kernel with modules (apt-get install linux-image-amd64)")
    raise AssertionError("unreachable")


def module_files(moddir: Path, names: list[str]) -> list[str]:
    """Module paths (relative to moddir) in load order, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(path)).replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        for dep in deps.get(path, []):
            visit(dep)
        if path not in order:
            order.append(path)

    for name in names:
        need(name in by_name, f"kernel module {name}")
        visit(by_name[name])
    return order


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 1) -> bytes:
    name_b = name.encode() + b"\0"
    header = "070701" + "".join(f"{v:08x}" for v in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
    out = header.encode() + name_b
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def build_initramfs(script: str, dest: Path) -> Path:
    need_tool("busybox")
    busybox = Path(shutil.which("busybox"))
    _, moddir = kernel()
    modules = module_files(moddir, MODULES)
    init = "\n".join([
        "#!/bin/busybox sh",
        "/bin/busybox --install -s /bin",
        "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev",
        *[f"insmod /modules/{os.path.basename(m)}" for m in modules],
        "ip link set lo up",
        "echo PYVDE-GUEST-START",
        script,
        f"echo {DONE}",
        "poweroff -f",
        "",
    ])
    entries = [("bin", 0o040755, b""), ("proc", 0o040755, b""), ("sys", 0o040755, b""),
               ("dev", 0o040755, b""), ("modules", 0o040755, b""), ("tmp", 0o041777, b""),
               ("bin/busybox", 0o100755, busybox.read_bytes()),
               ("init", 0o100755, init.encode())]
    for m in modules:
        data = (moddir / m).read_bytes()
        need(not m.endswith((".xz", ".zst", ".gz")), f"uncompressed kernel modules ({m})")
        entries.append((f"modules/{os.path.basename(m)}", 0o100644, data))
    blob = b"".join(_cpio_entry(n, mode, data, ino=i + 1) for i, (n, mode, data) in enumerate(entries))
    blob += _cpio_entry("TRAILER!!!", 0, b"", ino=0)
    dest.write_bytes(blob)
    return dest


def run_guest(initramfs: Path, nic_args: list[str], timeout: float = 180) -> str:
    """Boots the guest under TCG; returns its console output once it has powered off."""
    need_tool("qemu-system-x86_64")
    vmlinuz, _ = kernel()
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
           "-monitor", "none", "-kernel", str(vmlinuz), "-initrd", str(initramfs),
           "-append", "console=ttyS0 panic=-1 quiet loglevel=3", *nic_args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert DONE in out, f"guest did not finish: {out[-3000:]}"
    return out
