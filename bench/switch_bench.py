#!/usr/bin/env python3
"""Frames per second through pyvde-switch and Debian's vde_switch, side by side.

Every scenario runs against both switches in the same run (and, for one sender and one
receiver, against a direct ptp:// link between the two clients, the limit with no switch).
The clients are bench/vde_loadgen, a libvdeplug client that moves frames with
sendmmsg/recvmmsg. Each figure is the median of --trials runs of --duration seconds.

    python3 bench/switch_bench.py                 # full run, prints a markdown table
    python3 bench/switch_bench.py --quick         # smoke run: 1 trial of 1 s

Needs root only for nothing; needs gcc, libvdeplug-dev and vde2 (vde_switch).
Not a test: numbers depend on the machine; docs/benchmarks.md records a run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import add_trial_options, parse_trial_options, wait_for, wait_until

HERE = Path(__file__).resolve().parent
LOADGEN_SRC = HERE / "vde_loadgen.c"
LOADGEN = HERE / "build" / "vde_loadgen"
PYVDE_SWITCH = str(Path(sys.executable).parent / "pyvde-switch")


def build_loadgen() -> None:
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return
    LOADGEN.parent.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(LOADGEN), str(LOADGEN_SRC), "-lvdeplug"],
                   check=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Switch:
    """A switch under test: started fresh for each trial so no state carries over."""

    trials = 0

    def __init__(self, kind: str, workdir: Path, setup: tuple[str, ...] = (),
                 query: tuple[str, ...] = ()):
        Switch.trials += 1
        self.kind = kind
        self.dir = workdir / f"{kind}{Switch.trials}.ctl"   # a fresh path: no leftovers
        self.mgmt = workdir / f"{kind}{Switch.trials}.mgmt"
        self.setup = setup        # console commands run before the clients start
        self.query = query        # console commands run at the end; replies in .answers
        self.answers: list[str] = []
        self.proc = None
        self.pid = None

    def start(self) -> None:
        if self.kind == "pyvde":
            self.proc = subprocess.Popen([PYVDE_SWITCH, "-s", str(self.dir), "--nostdin",
                                          "-M", str(self.mgmt)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.pid = self.proc.pid
        elif self.kind == "vde_switch":
            pidfile = self.dir.with_suffix(".pid")
            subprocess.run(["vde_switch", "-d", "-s", str(self.dir), "-p", str(pidfile),
                            "-M", str(self.mgmt)], check=True)
            wait_for("vde_switch's pid file",
                     lambda: pidfile.exists() and pidfile.read_text().strip())
            self.pid = int(pidfile.read_text())
        else:                                    # direct ptp:// link, no switch
            return
        wait_for(f"{self.kind} to start", lambda: (self.dir / "ctl").exists())
        if self.setup:
            console(self.mgmt, self.setup)

    def vnl(self, port: int | None = None) -> str:
        if self.kind == "direct":
            return f"ptp://{self.dir}"
        return str(self.dir) if port is None else f"{self.dir}[{port}]"

    def stop(self) -> None:
        if self.pid and self.query:
            self.answers = console(self.mgmt, self.query)
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)
            if self.proc:
                self.proc.wait(10)
            else:
                wait_until(lambda: not Path(f"/proc/{self.pid}").exists())
        for p in (self.dir, Path(str(self.dir) + "+"), self.mgmt):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        self.pid = None


def console(path: Path, commands: tuple[str, ...]) -> list[str]:
    """Runs commands on a switch console, one per write (vde_switch reads one per read()),
    each waiting for its status line; any 1xxx error other than 1000 is fatal. Returns
    the replies' text."""
    import socket
    deadline = time.monotonic() + 5       # for the file and the connection together
    wait_for(f"a console at {path}", path.exists)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        while True:        # the file exists from bind(); connect works from listen()
            try:
                s.connect(str(path))
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        buf, replies = b"", []
        while not buf.endswith(b"$ "):
            buf += s.recv(4096)
        for cmd in commands:
            s.sendall(cmd.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\nvde$ "):
                buf += s.recv(4096)
            if b"\n1000 Success" not in b"\n" + buf:
                raise RuntimeError(f"{cmd}: {buf.decode(errors='replace').strip()}")
            replies.append(buf.decode(errors="replace"))
    return replies


def parse_rate(out: str) -> float:
    fields = dict(item.split("=") for item in out.split())
    return float(fields["rate"])


def trial(sw: Switch, scenario: str, size: int, fanout: int, duration: float,
          ports: tuple[int | None, int | None] = (None, None),
          vlans: tuple[int | None, int | None] = (None, None)) -> tuple[float, float]:
    """One run; returns (delivered frames/s, switch CPU seconds per million frames).
    ports: the sender's and receiver's port (None: any); vlans: 802.1Q VID they tag with."""
    try:
        sw.start()
        t0 = time.time() + 1.5
        common = ["--start", f"{t0:.3f}", "--duration", str(duration)]
        lg = str(LOADGEN)
        if scenario == "mesh":
            procs = [subprocess.Popen([lg, "mesh", sw.vnl(), "--count", str(fanout), "--size", str(size)]
                                      + common, stdout=subprocess.PIPE, text=True)]
            receivers = procs
        else:
            tags = [[] if v is None else ["--vlan", str(v)] for v in vlans]
            recv = subprocess.Popen([lg, "recv", sw.vnl(ports[1]), "--count", str(fanout)]
                                    + tags[1] + common, stdout=subprocess.PIPE, text=True)
            time.sleep(0.4)
            dst = ["--dst", "02:00:00:00:01:00"] if scenario == "unicast" else []
            send = subprocess.Popen([lg, "send", sw.vnl(ports[0]), "--size", str(size)] + dst
                                    + tags[0] + common,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs, receivers = [recv, send], [recv]
        cpu0 = None
        if sw.pid:
            time.sleep(max(0.0, t0 - time.time()))
            cpu0 = cpu_seconds(sw.pid)
            time.sleep(duration)
            cpu1 = cpu_seconds(sw.pid)
        outs = [p.communicate(timeout=duration + 30)[0] for p in procs]
        rate = sum(parse_rate(o) for o, p in zip(outs, procs, strict=True) if p in receivers)
        cpu_per_mframe = ((cpu1 - cpu0) / (rate * duration) * 1e6) if cpu0 is not None and rate else 0.0
        return rate, cpu_per_mframe
    finally:
        sw.stop()


SCENARIOS = [
    # (name, scenario, frame size, fan-out or ports, also run the direct link?)
    ("1 -> 1, 64 B", "unicast", 64, 1, True),
    ("1 -> 1, 1514 B", "unicast", 1514, 1, True),
    ("1 -> 2 flood, 64 B", "flood", 64, 2, False),
    ("1 -> 8 flood, 64 B", "flood", 64, 8, False),
    ("4 ports all-to-all, 64 B", "mesh", 64, 4, False),
    ("16 ports all-to-all, 64 B", "mesh", 64, 16, False),
    ("16 ports all-to-all, 1514 B", "mesh", 1514, 16, False),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_options(ap, 1.0)
    ap.add_argument("--only", help="run only scenarios whose name contains this text")
    args = parse_trial_options(ap)
    build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="pvbench", dir="/tmp"))
    rows = []
    try:
        for name, scenario, size, fanout, direct in SCENARIOS:
            if args.only and args.only not in name:
                continue
            kinds = ["pyvde", "vde_switch"] + (["direct"] if direct else [])
            result = {}
            for kind in kinds:
                runs = [trial(Switch(kind, work), scenario, size, fanout, args.duration)
                        for _ in range(args.trials)]
                result[kind] = (statistics.median(r[0] for r in runs),
                                statistics.median(r[1] for r in runs))
                print(f"# {name}: {kind}: {[round(r[0]) for r in runs]} frames/s", file=sys.stderr)
            rows.append((name, result))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| scenario | pyvde-switch frames/s | vde_switch frames/s | ratio | direct link frames/s |"
          " switch CPU µs/frame pyvde / vde_switch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        ours, theirs = r["pyvde"][0], r["vde_switch"][0]
        direct = f"{r['direct'][0]:,.0f}" if "direct" in r else "—"
        print(f"| {name} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x | {direct} |"
              f" {r['pyvde'][1]:.2f} / {r['vde_switch'][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
