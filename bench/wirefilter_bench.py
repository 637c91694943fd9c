#!/usr/bin/env python3
"""pyvde-wirefilter against Debian's wirefilter: frames/s through a wire, and accuracy.

Two pyvde-switches joined by the wire under test (`-v s1:s2`). Throughput: bench/
vde_loadgen sends unicast frames on switch 1 as fast as it can, a receiver on switch 2
counts them (median of --trials runs of --duration s). Accuracy: paced frames from a
client on switch 1 to a client on switch 2, measured against what was configured (loss
rate over 20000 frames; delay mean and standard deviation over 200 frames; bandwidth
from the arrival times of 600 1000-byte frames).

    python3 bench/wirefilter_bench.py            # full run, prints markdown tables
    python3 bench/wirefilter_bench.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from benchlib import add_trial_options, parse_trial_options, wait_for
from plug_bench import stop_process
from switch_bench import LOADGEN, PYVDE_SWITCH, build_loadgen, parse_rate

from plugs.vdeclient import connect
from plugs.vnl import Vde

PYVDE_WIREFILTER = str(Path(sys.executable).parent / "pyvde-wirefilter")
DST = bytes.fromhex("020000000100")
SRC = bytes.fromhex("020000000aaa")


class Rig:
    """Two fresh pyvde-switches and a wire between them."""

    def __init__(self, work: Path, kind: str, args: list[str]):
        self.work, self.kind, self.args = work, kind, args
        self.procs: list[subprocess.Popen] = []
        self.dirs = [Path(tempfile.mkdtemp(prefix="s", dir=work)) / "sw" for _ in (1, 2)]

    def __enter__(self):
        for d in self.dirs:
            self.procs.append(subprocess.Popen([PYVDE_SWITCH, "-s", str(d), "--nostdin"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for d in self.dirs:
            wait_for(f"the switch at {d}", lambda d=d: (d / "ctl").exists())
        prog = PYVDE_WIREFILTER if self.kind == "pyvde" else "wirefilter"
        # Debian's wirefilter reads console commands from stdin: keep a pipe open
        self.procs.append(subprocess.Popen([prog, "-v", f"{self.dirs[0]}:{self.dirs[1]}",
                                            *self.args], stdin=subprocess.PIPE,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            stop_process(p)
        for d in self.dirs:
            shutil.rmtree(d.parent, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(work, kind, args, size, duration) -> tuple[float, float]:
    """Frames/s delivered, and the wire's CPU time per delivered frame (microseconds)."""
    with Rig(work, kind, args) as rig:
        wire = rig.procs[-1].pid
        t0 = time.time() + 1.5
        common = ["--start", f"{t0:.3f}", "--duration", str(duration)]
        recv = subprocess.Popen([str(LOADGEN), "recv", str(rig.dirs[1]), "--count", "1"] + common,
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.4)
        send = subprocess.Popen([str(LOADGEN), "send", str(rig.dirs[0]), "--size", str(size),
                                 "--dst", "02:00:00:00:01:00"] + common,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(max(0.0, t0 - time.time()))
        cpu0 = cpu_seconds(wire)
        time.sleep(duration)
        cpu1 = cpu_seconds(wire)
        out = recv.communicate(timeout=duration + 30)[0]
        send.communicate(timeout=duration + 30)
        rate = parse_rate(out)
        return rate, (cpu1 - cpu0) * 1e6 / max(1.0, rate * duration)


def frame(payload: bytes) -> bytes:
    return DST + SRC + b"\x88\xb5" + payload


def accuracy(work, kind, args, what: str) -> float | tuple[float, float]:
    with Rig(work, kind, args) as rig:
        a = connect(Vde(str(rig.dirs[0])), "bench a")
        b = connect(Vde(str(rig.dirs[1])), "bench b")
        try:
            b.data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            b.data.send(SRC + DST + b"\x88\xb5" + bytes(46))   # switch 1 learns DST
            time.sleep(0.3)
            _drain(a.data, 0.1)
            if what == "loss":
                n, got = 20000, 0
                for start in range(0, n, 200):
                    for i in range(start, start + 200):
                        a.data.send(frame(i.to_bytes(4, "big") + bytes(42)))
                    got += len(_drain(b.data, 0.02))
                got += len(_drain(b.data, 0.5))
                return 100.0 * (n - got) / n
            if what == "delay":
                delays = []
                for i in range(200):
                    t = time.monotonic()
                    a.data.send(frame(i.to_bytes(4, "big") + bytes(42)))
                    b.data.settimeout(2)
                    b.data.recv(65536)
                    delays.append((time.monotonic() - t) * 1000)
                return statistics.mean(delays), statistics.pstdev(delays)
            # bandwidth: a burst of 600 frames of 1000 bytes, arrival rate of the last 500
            for i in range(600):
                a.data.send(frame(i.to_bytes(4, "big") + bytes(986)))
            times = []
            b.data.settimeout(5)
            for _ in range(600):
                b.data.recv(65536)
                times.append(time.monotonic())
            return 500 * 1000 / (times[-1] - times[99])
        finally:
            a.close()
            b.close()


def _drain(s, idle):
    out = []
    while True:
        try:
            s.settimeout(idle)
            out.append(s.recv(65536))
        except (TimeoutError, BlockingIOError, OSError):
            return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_options(ap, 2.0)
    args = parse_trial_options(ap)
    build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="pvwf", dir="/tmp"))
    try:
        rows = []
        for name, wargs, size in [("no impairment, 64 B", [], 64),
                                  ("--loss 5, 64 B", ["--loss", "5"], 64),
                                  ("no impairment, 1514 B", [], 1514)]:
            r = {}
            for kind in ("pyvde", "wirefilter"):
                runs = [throughput(work, kind, wargs, size, args.duration) for _ in range(args.trials)]
                print(f"# {name}: {kind}: {[(round(x), round(c, 2)) for x, c in runs]}",
                      file=sys.stderr)
                r[kind] = statistics.median(x for x, _ in runs)
                r[kind + " cpu"] = statistics.median(c for _, c in runs)
            rows.append((name, r))
        acc = []
        for label, wargs, what, want in [("loss 5%", ["--loss", "5"], "loss", "5 %"),
                                         ("loss 20%", ["--loss", "20"], "loss", "20 %"),
                                         ("delay 50 ms", ["--delay", "50"], "delay", "50 ms, sd 0"),
                                         ("delay 50+30N ms", ["--delay", "50+30N"], "delay",
                                          "50 ms, sd 10"),
                                         ("bandwidth 1 MB/s", ["--band", "1M"], "band",
                                          "1048576 B/s")]:
            got = {kind: accuracy(work, kind, wargs, what) for kind in ("pyvde", "wirefilter")}
            acc.append((label, want, got))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("Reproduce: .venv/bin/python bench/wirefilter_bench.py\n")
    print("| through the wire, 1 -> 1 unicast | pyvde-wirefilter frames/s | wirefilter frames/s"
          " | ratio | wire CPU/frame, pyvde | wirefilter | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['pyvde']:,.0f} | {r['wirefilter']:,.0f}"
              f" | {r['pyvde'] / r['wirefilter']:.2f}x | {r['pyvde cpu']:.2f} µs"
              f" | {r['wirefilter cpu']:.2f} µs | {r['wirefilter cpu'] / r['pyvde cpu']:.2f}x less |")
    print()
    print("| configured | asked | pyvde-wirefilter measured | wirefilter measured |")
    print("|---|---|---:|---:|")

    def fmt(x):
        if isinstance(x, tuple):
            return f"{x[0]:.1f} ms, sd {x[1]:.1f}"
        return f"{x:,.2f}" if x < 1000 else f"{x:,.0f} B/s"
    for label, want, got in acc:
        loss = label.startswith("loss")
        show = (lambda v: f"{v:.2f} %") if loss else fmt
        print(f"| {label} | {want} | {show(got['pyvde'])} | {show(got['wirefilter'])} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
