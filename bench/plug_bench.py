#!/usr/bin/env python3
"""The plugs: TCP through a switch and two tap plugs, and frames/s through a cable plug.

A. iperf3 TCP throughput from network namespace A to namespace B, at MTU 1500, 9000 and
   65520 (set on both ends), through four stacks:

     pyvde     pyvde-switch --maxframe 65550 + two pyvde-plug2tap
     vde2      vde_switch -d + two vde_plug2tap (frames cut to 1518 bytes)
     vdeplug4  vde_plug null:// switch:///DIR + two vde_plug tap://TAP vde:///DIR
     bridge    a kernel bridge with a veth pair per namespace (the limit: no user space)

   Each tap is made in the root namespace (ip tuntap add), given the MTU, attached by its
   plug and then moved into its namespace (10.77.0.1/24 in A, 10.77.0.2/24 in B). Before
   iperf3 runs, a ping of a full-size frame (DF set) must cross; if it does not, the stack
   cannot carry that MTU: the cell shows "—" (iperf3 still runs once, briefly, and the
   notes give what it moved), and further trials of it are skipped. Also reported: the CPU
   of the switch and of each plug during the run (% of one core, kernel time included)
   and how busy the whole machine was.

B. frames/s through a cable between two pyvde-switches: `pyvde-plug DIR1 DIR2` against
   Debian's `vde_plug DIR1 DIR2` (vdeplug4), bench/vde_loadgen sending unicast on switch 1
   and receiving on switch 2 (its hello broadcast crosses the cable, so both switches
   learn where it is), 64-byte and 1514-byte frames; one switch without a cable as the
   reference; and the cable's CPU per delivered frame.

Every trial starts everything itself and undoes it all (namespaces, taps, bridge,
processes, directories) in clean-up steps that run whatever happens (an error, Ctrl-C,
SIGTERM), so a run leaves the machine as it found it. Each figure is the median of
--trials runs of --duration seconds.

    python3 bench/plug_bench.py                 # full run (about 5 minutes), markdown tables
    python3 bench/plug_bench.py --quick         # smoke run: 1 trial of 3 s per figure
    python3 bench/plug_bench.py --only tcp --mtu 9000 --stack pyvde --stack vdeplug4

Needs root (namespaces, taps), iperf3, iproute2, vde2 (vde_switch, vde_plug2tap, and
vdeplug4's vde_plug), gcc and libvdeplug-dev (for vde_loadgen).
Not a test: numbers depend on the machine; docs/benchmarks.md records a run.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_trial_options, parse_trial_options, wait_for, wait_until
from switch_bench import (
    LOADGEN,
    Switch,
    build_loadgen,
    console,
    cpu_seconds,
    parse_rate,
)

BIN = Path(sys.executable).parent
PYVDE_SWITCH = str(BIN / "pyvde-switch")
PYVDE_PLUG = str(BIN / "pyvde-plug")
PYVDE_PLUG2TAP = str(BIN / "pyvde-plug2tap")

MTUS = (1500, 9000, 65520)
STACKS = ("pyvde", "vde2", "vdeplug4", "bridge")
ADDR_A, ADDR_B = "10.77.0.1", "10.77.0.2"
TAG = f"pb{os.getpid()}"         # names of this run's namespaces and interfaces


def run(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True, text=True)


def ns_run(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", ns, *cmd, **kw)


def tap_attached(pid: int, ifname: str) -> bool:
    """True once process pid holds a tun fd bound to ifname (its fdinfo says iff: ifname)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            try:
                if f"iff:\t{ifname}\n" in Path(f"/proc/{pid}/fdinfo/{fd}").read_text():
                    return True
            except OSError:
                continue
    except OSError:
        pass
    return False


def stop_process(proc: subprocess.Popen | None = None, pid: int | None = None) -> None:
    """SIGTERM, a few seconds' grace, then SIGKILL; reaps our own children."""
    if proc is not None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_until(lambda: not Path(f"/proc/{pid}").exists()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Signals:
    depth = 0                              # > 0 while an Undo runs
    pending: BaseException | None = None   # a signal that came meanwhile


def on_signal(signum: int, _frame) -> None:
    """SIGINT and SIGTERM: unwind through every finally; while clean-up runs the signal
    waits until it is done, so a clean-up step is never cut short."""
    exc = KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)
    if _Signals.depth:
        _Signals.pending = _Signals.pending or exc
        return
    raise exc


class Undo:
    """Clean-up steps, run in reverse order on exit whatever happened: a step that fails
    is reported and the others still run."""

    def __init__(self) -> None:
        self.steps: list = []

    def add(self, step) -> None:
        self.steps.append(step)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.run()

    def run(self) -> None:
        _Signals.depth += 1
        try:
            while self.steps:
                step = self.steps.pop()
                try:
                    step()
                except Exception as e:  # noqa: BLE001 -- one failed step must not stop the rest
                    print(f"# clean-up: {e!r}", file=sys.stderr)
        finally:
            _Signals.depth -= 1
        if _Signals.depth == 0 and _Signals.pending is not None:
            exc, _Signals.pending = _Signals.pending, None
            raise exc


class Rig:
    """A test set-up built by _build() on entry, every step of it undone (self.undo) on
    exit or when the build fails."""

    undo: Undo

    def __enter__(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.undo.run()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.undo.run()

    def _build(self) -> None:
        raise NotImplementedError


class Testbed(Rig):
    """Namespaces A and B joined by one stack at one MTU; a context manager that undoes
    everything it did, in reverse, whatever went wrong."""

    def __init__(self, stack: str, mtu: int, workdir: Path, n: int):
        self.stack, self.mtu = stack, mtu
        self.ns = (f"{TAG}a", f"{TAG}b")
        self.ifs = (f"{TAG}a", f"{TAG}b")          # the interface in each namespace
        self.ns_bridge = f"{TAG}s"
        self.dir = workdir / f"{stack}{n}"
        self.dir.mkdir()
        self.procs: list[subprocess.Popen] = []
        self.daemon_pid: int | None = None       # vde_switch -d
        self.cpu_pids: dict[str, int] = {}       # the user-space parts, for CPU shares
        self.undo = Undo()

    def _spawn(self, name: str, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        self.undo.add(lambda: stop_process(p))
        self.cpu_pids[name] = p.pid
        return p

    def _add_ns(self, ns: str) -> None:
        run("ip", "netns", "add", ns)
        self.undo.add(lambda: run("ip", "netns", "del", ns, check=False))
        run("ip", "-n", ns, "link", "set", "lo", "up")

    def _build(self) -> None:
        self.undo.add(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        for ns in self.ns:
            self._add_ns(ns)
        if self.stack == "bridge":
            self._build_bridge()
        else:
            self._build_taps()
        for ns, ifname, addr in zip(self.ns, self.ifs, (ADDR_A, ADDR_B), strict=True):
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            run("ip", "-n", ns, "link", "set", ifname, "up")

    def _build_bridge(self) -> None:
        br = self.ns_bridge
        self._add_ns(br)
        run("ip", "-n", br, "link", "add", "br0", "mtu", str(self.mtu), "type", "bridge")
        for i, (ns, ifname) in enumerate(zip(self.ns, self.ifs, strict=True)):
            port = f"port{i}"
            run("ip", "-n", br, "link", "add", port, "mtu", str(self.mtu), "type", "veth",
                "peer", "name", ifname, "netns", ns, "mtu", str(self.mtu))
            run("ip", "-n", br, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", br, "link", "set", "br0", "up")

    def _build_taps(self) -> None:
        d = self.dir / "sw"
        for ifname in self.ifs:
            run("ip", "tuntap", "add", "dev", ifname, "mode", "tap")
            # wherever it ended up (moved, or still in the root namespace): delete it
            self.undo.add(lambda i=ifname: self._del_tap(i))
            run("ip", "link", "set", ifname, "mtu", str(self.mtu))
        if self.stack == "pyvde":
            self._spawn("switch", PYVDE_SWITCH, "-s", str(d), "--nostdin", "--maxframe", "65550")
        elif self.stack == "vde2":
            pidfile = self.dir / "sw.pid"
            self.undo.add(lambda: stop_process(pid=self.daemon_pid))
            run("vde_switch", "-d", "-s", str(d), "-p", str(pidfile))
            wait_for("vde_switch's pid file",
                     lambda: pidfile.exists() and pidfile.read_text().strip())
            self.daemon_pid = int(pidfile.read_text())
            self.cpu_pids["switch"] = self.daemon_pid
        else:
            self._spawn("switch", "vde_plug", "null://", f"switch://{d}")
        wait_for(f"{self.stack}'s switch", lambda: (d / "ctl").exists())
        for side, ifname in zip("AB", self.ifs, strict=True):
            if self.stack == "pyvde":
                p = self._spawn(f"plug {side}", PYVDE_PLUG2TAP, "-s", str(d), ifname)
            elif self.stack == "vde2":
                p = self._spawn(f"plug {side}", "vde_plug2tap", "-s", str(d), ifname)
            else:
                p = self._spawn(f"plug {side}", "vde_plug", f"tap://{ifname}", f"vde://{d}")
            wait_for(f"{self.stack}'s plug on {ifname}",
                     lambda p=p, i=ifname: tap_attached(p.pid, i) or p.poll() is not None)
            if p.poll() is not None:
                raise RuntimeError(f"{self.stack}'s plug on {ifname} exited ({p.returncode})")
        for ns, ifname in zip(self.ns, self.ifs, strict=True):
            run("ip", "link", "set", ifname, "netns", ns)

    def _del_tap(self, ifname: str) -> None:
        for ns in self.ns:
            run("ip", "-n", ns, "link", "del", ifname, check=False)
        run("ip", "link", "del", ifname, check=False)

    def ping(self, size: int | None = None, tries: int = 3) -> bool:
        """A ping from A to B; with size, of a full frame with DF set."""
        extra = [] if size is None else ["-M", "do", "-s", str(size)]
        for _ in range(tries):
            r = ns_run(self.ns[0], "ping", "-q", "-c", "1", "-W", "1", *extra, ADDR_B,
                       check=False)
            if r.returncode == 0:
                return True
        return False

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each user-space part, and of the whole machine."""
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        out = {"machine": (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
               / os.cpu_count()}
        for name, pid in self.cpu_pids.items():
            try:
                out[name] = cpu_seconds(pid)
            except OSError:
                out[name] = float("nan")
        return out

    def iperf(self, duration: float) -> tuple[float | None, dict[str, float], str]:
        """(Gbit/s received or None, CPU share of a core per user-space part and of all
        cores for "machine", error)."""
        server = subprocess.Popen(["ip", "netns", "exec", self.ns[1], "iperf3", "-s", "-1",
                                   "--idle-timeout", str(int(duration) + 30)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        self.undo.add(lambda: stop_process(server))
        try:
            wait_for("the iperf3 server", lambda: ns_run(
                self.ns[1], "ss", "-Hltn", "sport = :5201").stdout.strip() != "")
            cpu0, t0 = self.cpu(), time.monotonic()
            try:
                r = ns_run(self.ns[0], "iperf3", "-c", ADDR_B, "-t", str(duration), "-J",
                           "--connect-timeout", "3000", "--snd-timeout", "3000",
                           check=False, timeout=duration + 20)
            except subprocess.TimeoutExpired:
                return None, {}, "iperf3 did not finish"
            cpu1, t1 = self.cpu(), time.monotonic()
            shares = {k: (cpu1[k] - cpu0[k]) / (t1 - t0) for k in cpu0}
            try:
                result = json.loads(r.stdout)
            except json.JSONDecodeError:
                return None, shares, f"iperf3: {r.stderr.strip() or 'no output'}"
            if "error" in result and "sum_received" not in result.get("end", {}):
                return None, shares, f"iperf3: {result['error']}"
            return result["end"]["sum_received"]["bits_per_second"] / 1e9, shares, ""
        finally:
            stop_process(server)


def tcp_trial(stack: str, mtu: int, duration: float, workdir: Path, n: int):
    """One trial: (Gbit/s or None, CPU shares, note)."""
    with Testbed(stack, mtu, workdir, n) as tb:
        if not tb.ping(tries=5):
            return None, {}, "no ping at all"
        if not tb.ping(mtu - 28):
            gbps, _, err = tb.iperf(min(duration, 2))
            moved = err or f"iperf3 moved {gbps:.3f} Gbit/s"
            return None, {}, f"a full-size ping ({mtu} bytes, DF) does not cross; {moved}"
        gbps, shares, err = tb.iperf(duration)
        return gbps, shares, err


def cable_trial(cable: str | None, size: int, duration: float,
                workdir: Path) -> tuple[float, float]:
    """Frames/s delivered through switch 1 -> cable -> switch 2, and the cable's CPU µs
    per delivered frame. cable None: the reference, sender and receiver on one switch."""
    sw1, sw2 = Switch("pyvde", workdir), Switch("pyvde", workdir)
    with Undo() as undo:
        def spawn(cmd: list[str], **kw) -> subprocess.Popen:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
            undo.add(lambda: stop_process(p))
            return p

        for sw in (sw1, sw2) if cable else (sw1,):
            undo.add(sw.stop)
            sw.start()
        cab = None
        if cable:
            cmd = [PYVDE_PLUG] if cable == "pyvde-plug" else ["vde_plug"]
            cab = spawn(cmd + [str(sw1.dir), str(sw2.dir)], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
            mark = f"pid={cab.pid}"
            wait_for("the cable on both switches", lambda: cab.poll() is not None or all(
                mark in console(sw.mgmt, ("port/print",))[0] for sw in (sw1, sw2)))
            if cab.poll() is not None:
                raise RuntimeError(f"{cable} exited ({cab.returncode})")
        else:
            sw2 = sw1
        t0 = time.time() + 1.5
        common = ["--start", f"{t0:.3f}", "--duration", str(duration)]
        recv = spawn([str(LOADGEN), "recv", str(sw2.dir), "--count", "1"] + common,
                     stdout=subprocess.PIPE, text=True)
        time.sleep(0.4)    # its hello has crossed the cable: both switches know the MAC
        send = spawn([str(LOADGEN), "send", str(sw1.dir), "--size", str(size),
                      "--dst", "02:00:00:00:01:00"] + common,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(max(0.0, t0 - time.time()))
        cpu0 = cpu_seconds(cab.pid) if cab else 0.0
        time.sleep(duration)
        cpu1 = cpu_seconds(cab.pid) if cab else 0.0
        rate = parse_rate(recv.communicate(timeout=duration + 30)[0])
        send.communicate(timeout=duration + 30)
        return rate, ((cpu1 - cpu0) / (rate * duration) * 1e6 if rate else 0.0)


def fmt_gbps(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


NOT_RUN = "not run"


def report_tcp(tcp: dict, cpu: dict, notes: list[str]) -> None:
    """Prints part A's tables. tcp[stack, mtu]: Gbit/s, or None if the stack cannot carry
    that MTU; a missing key: not run (--mtu, --stack)."""
    def gbps(stack: str, mtu: int) -> str:
        return fmt_gbps(tcp[stack, mtu]) if (stack, mtu) in tcp else NOT_RUN

    def ratio(a: tuple[str, int], b: tuple[str, int]) -> str:
        if a not in tcp or b not in tcp:
            return NOT_RUN
        return fmt_ratio(tcp[a], tcp[b])

    mtus = [m for m in MTUS if any((s, m) in tcp for s in STACKS)]
    print("| MTU | pyvde Gbit/s | vde2 Gbit/s | vdeplug4 Gbit/s | kernel bridge Gbit/s |"
          " pyvde / bridge |")
    print("|---:|---:|---:|---:|---:|---:|")
    for mtu in mtus:
        print(f"| {mtu} | " + " | ".join(gbps(s, mtu) for s in STACKS)
              + f" | {ratio(('pyvde', mtu), ('bridge', mtu))} |")
    print()
    print("| target | measured | goal | met | as a fraction of the kernel bridge |")
    print("|---|---:|---:|:---:|---:|")
    targets = [   # (name, ours, theirs or None for an absolute goal, goal)
        ("MTU 1500: pyvde / vde2", ("pyvde", 1500), ("vde2", 1500), 1.3),
        ("MTU 9000: pyvde / vdeplug4", ("pyvde", 9000), ("vdeplug4", 9000), 1.3),
        ("MTU 65520: pyvde", ("pyvde", 65520), None, 6.0),
    ]
    for name, ours, theirs, goal in targets:
        if ours not in tcp or (theirs is not None and theirs not in tcp):
            continue
        mtu = ours[1]
        a, b = tcp[ours], tcp[theirs] if theirs else None
        if theirs:
            measured, goal_s = fmt_ratio(a, b), f"≥ {goal:.2f}x"
            value = None if a is None or not b else a / b
        else:
            measured, goal_s, value = f"{fmt_gbps(a)} Gbit/s", f"≥ {goal:g} Gbit/s", a
        met = "—" if value is None else ("yes" if value >= goal else "no")
        fracs = [f"{s} {ratio((s, mtu), ('bridge', mtu))}"
                 for s in ([ours[0]] + ([theirs[0]] if theirs else []))]
        print(f"| {name} | {measured} | {goal_s} | {met} | {', '.join(fracs)} |")
    print()
    print(f"CPU during the iperf3 run: switch / plug A (sender's tap) / plug B, % of one"
          f" core (kernel time included); machine: all {os.cpu_count()} cores busy, %\n")
    print("| MTU | pyvde | vde2 | vdeplug4 | machine busy pyvde / vde2 / vdeplug4 / bridge |")
    print("|---:|---:|---:|---:|---:|")
    for mtu in mtus:
        cells = []
        for s in STACKS[:3]:
            c = cpu.get((s, mtu))
            cells.append(("—" if (s, mtu) in tcp else NOT_RUN) if not c else " / ".join(
                f"{100 * c[k]:.0f}" for k in ("switch", "plug A", "plug B")))
        busy = " / ".join(f"{100 * cpu[s, mtu]['machine']:.0f}" if (s, mtu) in cpu
                          else "—" if (s, mtu) in tcp else NOT_RUN for s in STACKS)
        print(f"| {mtu} | " + " | ".join(cells) + f" | {busy} |")
    if notes:
        print()
        for note in notes:
            print(f"* {note}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_options(ap, 3.0)
    ap.add_argument("--only", choices=("tcp", "cable"), help="run only part A or part B")
    ap.add_argument("--mtu", type=int, action="append", choices=MTUS,
                    help="part A at this MTU only (repeatable)")
    ap.add_argument("--stack", action="append", choices=STACKS,
                    help="part A through this stack only (repeatable)")
    args = parse_trial_options(ap)
    if os.geteuid() != 0:
        print("plug_bench: needs root (network namespaces, tap devices)", file=sys.stderr)
        return 2
    # SIGINT and SIGTERM unwind through every clean-up, so nothing is left behind
    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_signal)
    build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="pvplugbench", dir="/tmp"))
    tcp: dict[tuple[str, int], float | None] = {}
    cpu: dict[tuple[str, int], dict[str, float]] = {}
    notes: list[str] = []
    cables: dict[tuple[str, int], tuple[float, float]] = {}
    n = 0
    try:
        if args.only in (None, "tcp"):
            for mtu in args.mtu or MTUS:
                for stack in args.stack or STACKS:
                    runs, shares = [], []
                    for _ in range(args.trials):
                        n += 1
                        gbps, share, note = tcp_trial(stack, mtu, args.duration, work, n)
                        if gbps is None:
                            notes.append(f"{stack} at MTU {mtu}: {note}")
                            print(f"# MTU {mtu}: {stack}: fails: {note}", file=sys.stderr)
                            runs = []
                            break          # it cannot carry this MTU: no more trials
                        runs.append(gbps)
                        shares.append(share)
                    tcp[stack, mtu] = statistics.median(runs) if runs else None
                    if shares:
                        cpu[stack, mtu] = {k: statistics.median(s[k] for s in shares)
                                           for k in shares[0]}
                    if runs:
                        print(f"# MTU {mtu}: {stack}: {[round(r, 2) for r in runs]} Gbit/s"
                              f" CPU {cpu.get((stack, mtu))}", file=sys.stderr)
        if args.only in (None, "cable"):
            for size in (64, 1514):
                for cable in ("pyvde-plug", "vde_plug"):
                    runs = [cable_trial(cable, size, args.duration, work)
                            for _ in range(args.trials)]
                    cables[cable, size] = (statistics.median(r[0] for r in runs),
                                           statistics.median(r[1] for r in runs))
                    print(f"# cable {size} B: {cable}: {[round(r[0]) for r in runs]} frames/s",
                          file=sys.stderr)
                runs = [cable_trial(None, size, args.duration, work) for _ in range(args.trials)]
                cables["one switch", size] = (statistics.median(r[0] for r in runs), 0.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"Reproduce: .venv/bin/python bench/plug_bench.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"({args.trials} trial(s) of {args.duration:g} s per figure, median)\n")
    if tcp:
        report_tcp(tcp, cpu, notes)
    if cables:
        if tcp:
            print()
        print("| cable between two pyvde-switches, 1 -> 1 unicast | pyvde-plug frames/s |"
              " vde_plug frames/s | ratio | one switch, no cable, frames/s |"
              " cable CPU µs/frame pyvde-plug / vde_plug |")
        print("|---|---:|---:|---:|---:|---:|")
        for size in (64, 1514):
            ours, theirs = cables["pyvde-plug", size], cables["vde_plug", size]
            print(f"| {size} B | {ours[0]:,.0f} | {theirs[0]:,.0f} | {fmt_ratio(ours[0], theirs[0])}"
                  f" | {cables['one switch', size][0]:,.0f} | {ours[1]:.2f} / {theirs[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
