#!/usr/bin/env python3
"""The cables: TCP between two namespace "hosts" joined over UDP (issue 7 item 6).

Each trial builds four network namespaces and tears them down again:

    G1 (guest)              H1 (host)                      H2 (host)              G2 (guest)
    tap0 10.78.0.1/24 ==== plug2tap - switch - cable ~~UDP~~ cable - switch - plug2tap ==== tap0 10.78.0.2/24
                                               u0 192.168.77.1/24 -- veth, MTU 1500 -- u0 192.168.77.2/24

  * in H1 and H2: a pyvde-switch -s DIR --nostdin (its control directory is a path, so the
    processes below reach it from any namespace);
  * in G1 and G2: pyvde-plug2tap -s DIR --mtu M --up tap0, run inside the guest namespace
    (it makes tap0 there); the guest MTU is the cable's largest frame - 14;
  * in H1 and H2: the cable under test, its UDP crossing the veth u0 between H1 and H2.
    Only the cable differs from one stack to the next:

      vdeplug4-udp   Debian's vde_plug vde://DIR "udp://PORT->PEER:PORT" (vdeplug4 4.0.1;
                     one raw frame per datagram: largest frame 1472, guest MTU 1458)
      pyvde-plain    pyvde-cable -s DIR --listen SELF:PORT --connect PEER:PORT --plain
                     (the same wire format; guest MTU 1458)
      pyvde-sealed   pyvde-cable -s DIR --listen SELF:PORT --connect PEER:PORT --key FILE
                     (a fresh 32-byte key, mode 0600; 29 bytes of header and tag: largest
                     frame 1443, guest MTU 1429; --one-initiator: H1 --listen only)
      vde_cryptcab   Debian's vde_cryptcab -s DIR -p PORT -P KEY on H1 (server), and
                     -s DIR -p PORT -c 192.168.77.1:PORT -P KEY on H2 (client); a 24-byte
                     key file (Blowfish key + IV); 1 type byte, a 12-byte trailer and CBC
                     padding: largest frame 1451, guest MTU 1437. Under OpenSSL 3 it
                     is known to move nothing ("error in encrypt update").

Before iperf3 runs, a ping from G1 to G2 must cross within 10 s (the cables' handshakes),
then a ping of a full-size frame with DF set (guest MTU - 28 bytes of ICMP payload).
Figures, each the median of --trials runs of --duration seconds (the stacks take turns):

  * iperf3 TCP, one stream, from G1 to an iperf3 server in G2: Gbit/s received
    (end.sum_received); and the targets of the issue: pyvde-plain at least 1.5x and
    pyvde-sealed at least 1.0x vdeplug4-udp;
  * the CPU of each cable process meanwhile (% of one core, user + system from
    /proc/PID/stat, its child processes included), and how busy the whole machine was.
    The veth's counters must show the bytes crossing it, else the figure is refused.

A stack that cannot be set up, dies, or moves nothing gives "failed" in its cells (the
notes say why, from the cable's log), never a crash. Everything started is undone at exit
(namespaces, processes -- through their Popen objects, children of a cable included --,
directories), also on Ctrl-C or SIGTERM.

    python3 bench/cable_bench.py                     # full run (about 2 minutes)
    python3 bench/cable_bench.py --quick             # smoke run: 1 trial of 2 s
    python3 bench/cable_bench.py --quick --only vdeplug4-udp --only pyvde-plain
    python3 bench/cable_bench.py --quick --only pyvde-sealed --cable PATH/pyvde-cable

Needs root (namespaces, taps), iperf3, iproute2, vdeplug4's vde_plug, vde2-cryptcab, and
pyvde-cable in the virtualenv. Not a test: numbers depend on the machine.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_trial_options, parse_trial_options, wait_for
from plug_bench import Rig, Undo, ns_run, on_signal, run, stop_process, tap_attached
from switch_bench import cpu_seconds

BIN = Path(sys.executable).parent
PYVDE_SWITCH = str(BIN / "pyvde-switch")
PYVDE_PLUG2TAP = str(BIN / "pyvde-plug2tap")
PYVDE_CABLE = str(BIN / "pyvde-cable")

STACKS = ("vdeplug4-udp", "pyvde-plain", "pyvde-sealed", "vde_cryptcab")
# the guest MTU: the cable's largest frame on a path MTU of 1500, minus 14
GUEST_MTU = {"vdeplug4-udp": 1458, "pyvde-plain": 1458, "pyvde-sealed": 1429,
             "vde_cryptcab": 1437}
# (ours, theirs, goal): the targets of issue 7 item 6
TARGETS = (("pyvde-plain", "vdeplug4-udp", 1.5), ("pyvde-sealed", "vdeplug4-udp", 1.0))
UNDERLAY = ("192.168.77.1", "192.168.77.2")
GUEST = ("10.78.0.1", "10.78.0.2")
UNDERLAY_MTU = 1500
CABLE_PORT = 7700                 # UDP, each host's own end (each in its own namespace)
CRYPTCAB_PORT = 7667
VETH, TAP = "u0", "tap0"
TAG = f"cb{os.getpid()}"          # names of this run's namespaces

FAILED, NOT_RUN = "failed", "not run"


def descendants(pid: int) -> list[int]:
    """The living descendants of pid (children first), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of pid and its living descendants."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def machine_busy() -> float:
    """CPU seconds all cores spent busy so far, divided by the number of cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return ((sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
            / (os.cpu_count() or 1))


class Testbed(Rig):
    """Hosts H1, H2 joined by a veth, a switch in each, guests G1, G2 on tap plugs, and one
    stack's cable between the switches; a context manager that undoes everything it did,
    in reverse."""

    def __init__(self, stack: str, workdir: Path, n: int, one_initiator: bool = False,
                 cable: str = PYVDE_CABLE):
        self.stack, self.one_initiator, self.cable = stack, one_initiator, cable
        self.mtu = GUEST_MTU[stack]
        self.hosts = (f"{TAG}h1n{n}", f"{TAG}h2n{n}")
        self.guests = (f"{TAG}g1n{n}", f"{TAG}g2n{n}")
        self.dir = workdir / f"{stack}{n}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.cables: dict[str, subprocess.Popen] = {}   # "H1"/"H2": the cable process
        self.undo = Undo()

    # --- processes and their logs

    def _spawn(self, what: str, ns: str, *cmd: str) -> subprocess.Popen:
        """cmd in namespace ns (ip netns exec execs it: the pid is cmd's), output to
        DIR/what.log; stopped, with any children it made, by the clean-up."""
        log = open(self.dir / f"{what}.log", "wb")    # noqa: SIM115 -- closed by undo
        self.undo.add(log.close)
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT)
        self.undo.add(lambda: self._stop_tree(p))
        self.procs[what] = p
        return p

    @staticmethod
    def _stop_tree(p: subprocess.Popen) -> None:
        kids = descendants(p.pid) if p.poll() is None else []
        stop_process(p)
        for kid in kids:
            stop_process(pid=kid)

    def log_tail(self, what: str) -> str:
        try:
            text = (self.dir / f"{what}.log").read_text(errors="replace").strip()
        except OSError:
            return ""
        return " / ".join(text.splitlines()[-3:])[:300] or "no output"

    def check_alive(self) -> None:
        for what, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{what} exited ({p.returncode}): {self.log_tail(what)}")

    def cable_logs(self) -> str:
        return "; ".join(f"{w}: {self.log_tail(w)}" for w in self.cables)

    # --- the set-up

    def _add_ns(self, ns: str) -> None:
        run("ip", "netns", "add", ns)
        self.undo.add(lambda: run("ip", "netns", "del", ns, check=False))
        run("ip", "-n", ns, "link", "set", "lo", "up")

    def _build(self) -> None:
        self.dir.mkdir()
        self.undo.add(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        for ns in self.hosts + self.guests:
            self._add_ns(ns)
        h1, h2 = self.hosts
        run("ip", "-n", h1, "link", "add", VETH, "type", "veth", "peer", "name", VETH,
            "netns", h2)
        for ns, addr in zip(self.hosts, UNDERLAY, strict=True):
            run("ip", "-n", ns, "link", "set", VETH, "mtu", str(UNDERLAY_MTU), "up")
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", VETH)
        for i, (host, guest, addr) in enumerate(
                zip(self.hosts, self.guests, GUEST, strict=True), 1):
            sw = self._switch_dir(i)
            self._spawn(f"switch H{i}", host, PYVDE_SWITCH, "-s", str(sw), "--nostdin")
            wait_for(f"the switch of H{i}",
                     lambda sw=sw: (sw / "ctl").exists() or self._any_dead())
            self.check_alive()
            plug = self._spawn(f"plug G{i}", guest, PYVDE_PLUG2TAP, "-s", str(sw),
                               "--mtu", str(self.mtu), "--up", TAP)
            wait_for(f"pyvde-plug2tap on {TAP} of G{i}",
                     lambda p=plug: tap_attached(p.pid, TAP) or p.poll() is not None)
            self.check_alive()
            run("ip", "-n", guest, "link", "set", TAP, "mtu", str(self.mtu), "up")
            run("ip", "-n", guest, "addr", "add", f"{addr}/24", "dev", TAP)
        getattr(self, f"_cable_{self.stack.replace('-', '_')}")()
        time.sleep(0.3)                  # a cable that cannot start has died by now
        self.check_alive()
        if not self.ping(deadline=10):
            raise RuntimeError(f"no ping from G1 to G2 within 10 s ({self.cable_logs()})")
        if not self.ping(size=self.mtu - 28, deadline=3):
            raise RuntimeError(f"a full-size ping ({self.mtu} bytes, DF) does not cross"
                               f" ({self.cable_logs()})")

    def _any_dead(self) -> bool:
        return any(p.poll() is not None for p in self.procs.values())

    def _switch_dir(self, i: int) -> Path:
        return self.dir / f"sw{i}"

    def _cable(self, i: int, *cmd: str) -> None:
        self.cables[f"cable H{i}"] = self._spawn(f"cable H{i}", self.hosts[i - 1], *cmd)

    def _cable_vdeplug4_udp(self) -> None:
        for i in (1, 2):
            peer = UNDERLAY[2 - i]
            self._cable(i, "vde_plug", f"vde://{self._switch_dir(i)}",
                        f"udp://{UNDERLAY[i - 1]}:{CABLE_PORT}->{peer}:{CABLE_PORT}")

    def _pyvde_cable(self, *mode: str) -> None:
        if not os.access(self.cable, os.X_OK):
            raise RuntimeError(f"{self.cable} does not exist (or cannot be run)")
        for i in (1, 2):
            me, peer = UNDERLAY[i - 1], UNDERLAY[2 - i]
            connect = ([] if self.one_initiator and i == 1
                       else ["--connect", f"{peer}:{CABLE_PORT}"])
            self._cable(i, self.cable, "-s", str(self._switch_dir(i)),
                        "--listen", f"{me}:{CABLE_PORT}", *connect, *mode)

    def _cable_pyvde_plain(self) -> None:
        self._pyvde_cable("--plain")

    def _cable_pyvde_sealed(self) -> None:
        self._pyvde_cable("--key", str(self._key_file(32)))

    def _cable_vde_cryptcab(self) -> None:
        key = str(self._key_file(24))          # Blowfish: 16-byte key + 8-byte IV
        self._cable(1, "vde_cryptcab", "-s", str(self._switch_dir(1)),
                    "-p", str(CRYPTCAB_PORT), "-P", key)
        time.sleep(0.3)                        # the server is listening
        self._cable(2, "vde_cryptcab", "-s", str(self._switch_dir(2)),
                    "-p", str(CRYPTCAB_PORT), "-c", f"{UNDERLAY[0]}:{CRYPTCAB_PORT}",
                    "-P", key)

    def _key_file(self, size: int) -> Path:
        path = self.dir / "cable.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(size))
        return path

    # --- measuring

    def ping(self, size: int | None = None, deadline: float = 10) -> bool:
        """Pings from G1 to G2 (with size: of that ICMP payload, DF set) until one
        answers (True) or deadline seconds have passed; fails early if a process died."""
        extra = [] if size is None else ["-M", "do", "-s", str(size)]
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            r = ns_run(self.guests[0], "ping", "-q", "-c", "1", "-W", "1", *extra, GUEST[1],
                       check=False)
            if r.returncode == 0:
                return True
            self.check_alive()
            if r.returncode != 1:      # not "no reply": e.g. "message too long"
                time.sleep(0.2)
        return False

    def underlay_bytes(self) -> int:
        """Bytes H1 has sent on the veth so far."""
        r = run("ip", "-n", self.hosts[0], "-s", "-j", "link", "show", VETH)
        return json.loads(r.stdout)[0]["stats64"]["tx"]["bytes"]

    def cpu(self) -> dict[str, float]:
        out = {"machine": machine_busy()}
        for what, p in self.cables.items():
            out[what] = tree_cpu(p.pid)
        return out

    def iperf(self, duration: float) -> tuple[float, dict[str, float]]:
        """(Gbit/s received, CPU shares); RuntimeError if nothing moved."""
        server = subprocess.Popen(["ip", "netns", "exec", self.guests[1], "iperf3", "-s", "-1",
                                   "--idle-timeout", str(int(duration) + 30)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for("the iperf3 server", lambda: server.poll() is not None or ns_run(
                self.guests[1], "ss", "-Hltn", "sport = :5201").stdout.strip() != "")
            if server.poll() is not None:
                raise RuntimeError(f"the iperf3 server exited ({server.returncode})")
            cpu0, wire0, t0 = self.cpu(), self.underlay_bytes(), time.monotonic()
            try:
                r = ns_run(self.guests[0], "iperf3", "-c", GUEST[1], "-t", str(duration),
                           "-J", "--connect-timeout", "3000", "--snd-timeout", "3000",
                           check=False, timeout=duration + 20)
            except subprocess.TimeoutExpired:
                raise RuntimeError("iperf3 did not finish") from None
            cpu1, wire1, t1 = self.cpu(), self.underlay_bytes(), time.monotonic()
            shares = {k: (cpu1[k] - cpu0[k]) / (t1 - t0) for k in cpu0}
            try:
                result = json.loads(r.stdout)
            except json.JSONDecodeError:
                raise RuntimeError(f"iperf3: {r.stderr.strip() or 'no output'}") from None
            received = result.get("end", {}).get("sum_received", {})
            if not received.get("bits_per_second"):
                raise RuntimeError(f"iperf3: {result.get('error', 'nothing received')}")
            if wire1 - wire0 < received.get("bytes", 0):
                raise RuntimeError(f"the veth carried {wire1 - wire0} bytes, less than the"
                                   f" {received['bytes']} iperf3 received: not across it?")
            return received["bits_per_second"] / 1e9, shares
        finally:
            stop_process(server)


class Results:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.cpu: dict[str, list[dict[str, float]]] = {}
        self.failed: dict[str, int] = {}
        self.notes: list[str] = []

    def add(self, stack: str, gbps: float, cpu: dict[str, float]) -> None:
        self.values.setdefault(stack, []).append(gbps)
        self.cpu.setdefault(stack, []).append(cpu)

    def fail(self, stack: str, why: str) -> None:
        self.failed[stack] = self.failed.get(stack, 0) + 1
        note = f"{stack}: {why}"
        print(f"# {note}", file=sys.stderr)
        self.notes.append(note)

    def median(self, stack: str) -> float | None:
        v = self.values.get(stack)
        return statistics.median(v) if v else None

    def cpu_median(self, stack: str, what: str) -> float | None:
        v = [c[what] for c in self.cpu.get(stack, []) if what in c]
        return statistics.median(v) if v else None


def trial(stack: str, args, work: Path, n: int, res: Results) -> bool:
    """One trial of one stack; False if it failed (the notes say why)."""
    try:
        with Testbed(stack, work, n, args.one_initiator, args.cable) as tb:
            try:
                gbps, cpu = tb.iperf(args.duration)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                dead = [f"{w} exited ({p.returncode})" for w, p in tb.procs.items()
                        if p.poll() is not None]
                res.fail(stack, f"{e}{'; ' + ', '.join(dead) if dead else ''}"
                                f" ({tb.cable_logs()})")
                return False
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        res.fail(stack, f"set-up: {e}")
        return False
    res.add(stack, gbps, cpu)
    print(f"# {stack}: {gbps:.3f} Gbit/s, cable CPU H1 {100 * cpu.get('cable H1', 0):.0f}%"
          f" H2 {100 * cpu.get('cable H2', 0):.0f}%", file=sys.stderr)
    return True


def report(args, stacks: list[str], res: Results) -> None:
    def gbps(stack: str) -> str:
        if stack not in stacks:
            return NOT_RUN
        v = res.median(stack)
        return FAILED if v is None else f"{v:.2f}"

    def pct(stack: str, what: str) -> str:
        if stack not in stacks:
            return NOT_RUN
        v = res.cpu_median(stack, what)
        return FAILED if v is None else f"{100 * v:.0f}"

    print("Reproduce: .venv/bin/python bench/cable_bench.py"
          f" {shlex.join(sys.argv[1:])}".rstrip())
    print(f"({args.trials} trial(s) of {args.duration:g} s per figure, median; iperf3 TCP,"
          f" one stream, guest G1 -> guest G2 across the cable; underlay: a veth of MTU"
          f" {UNDERLAY_MTU} between the host namespaces"
          f"{'; pyvde sealed: H2 initiates, H1 only listens' if args.one_initiator else ''})\n")
    print("| stack | guest MTU | Gbit/s |")
    print("|---|---:|---:|")
    for stack in STACKS:
        print(f"| {stack} | {GUEST_MTU[stack]} | {gbps(stack)} |")
    print()
    print("| target | measured | goal | met |")
    print("|---|---:|---:|:---:|")
    for ours, theirs, goal in TARGETS:
        if ours not in stacks or theirs not in stacks:
            measured, met = NOT_RUN, NOT_RUN
        else:
            a, b = res.median(ours), res.median(theirs)
            if not b:
                measured, met = "—", f"— ({theirs} failed)"
            elif a is None:
                measured, met = FAILED, "missed"
            else:
                measured, met = f"{a / b:.2f}x", "met" if a / b >= goal else "missed"
        print(f"| {ours} / {theirs} | {measured} | ≥ {goal:.1f}x | {met} |")
    print("\nCPU during the iperf3 run, % of one core (user + system, children included);"
          f" machine: all {os.cpu_count()} cores busy, %:\n")
    print("| stack | cable on H1 (sender's side) | cable on H2 (receiver's side) | machine |")
    print("|---|---:|---:|---:|")
    for stack in STACKS:
        print(f"| {stack} | {pct(stack, 'cable H1')} | {pct(stack, 'cable H2')}"
              f" | {pct(stack, 'machine')} |")
    partial = [f"{s}: {n} of {args.trials} trials failed" for s, n in res.failed.items()
               if s in res.values]
    if res.notes or partial:
        print()
        for note in partial + res.notes:
            print(f"* {note}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_options(ap, 2.0)
    ap.add_argument("--only", action="append", choices=STACKS, metavar="NAME",
                    help=f"run only this stack (repeatable): {', '.join(STACKS)}")
    ap.add_argument("--cable", default=PYVDE_CABLE, metavar="PATH",
                    help=f"the pyvde-cable to run (default {PYVDE_CABLE})")
    ap.add_argument("--one-initiator", action="store_true",
                    help="pyvde-cable on H1 with --listen only (H2 still --listen and"
                         " --connect): no simultaneous handshakes")
    args = parse_trial_options(ap)
    if os.geteuid() != 0:
        print("cable_bench: needs root (network namespaces, tap devices)", file=sys.stderr)
        return 2
    # SIGINT and SIGTERM unwind through every clean-up, so nothing is left behind
    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_signal)
    stacks = [s for s in STACKS if not args.only or s in args.only]
    res = Results()
    given_up: set[str] = set()
    n = 0
    try:
        with Undo() as undo:
            work = Path(tempfile.mkdtemp(prefix="pvcablebench", dir="/tmp"))
            undo.add(lambda: shutil.rmtree(work, ignore_errors=True))
            for i in range(args.trials):
                for stack in stacks:
                    if stack in given_up:
                        continue
                    n += 1
                    if not trial(stack, args, work, n, res) and stack not in res.values:
                        # failed before ever working: no point in more trials of it
                        given_up.add(stack)
                        if i + 1 < args.trials:
                            res.notes.append(f"{stack}: further trials skipped")
    except KeyboardInterrupt:
        print("cable_bench: interrupted; everything it started is cleaned up", file=sys.stderr)
        return 130
    report(args, stacks, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
