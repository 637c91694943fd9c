#!/usr/bin/env python3
"""The slirp routers: a network namespace behind a tap reaching the host's loopback
through the router's address 10.0.2.2 (issue 6 item 7).

Three user-mode NAT routers, measured in the same run:

  slirp4netns   Debian's slirp4netns --configure --mtu=MTU on tap0 of the namespace
                (namespace address 10.0.2.100, set by slirp4netns itself)
  slirpvde      Debian's slirpvde -D -q on a Debian vde_switch, the namespace attached
                by Debian's vde_plug2tap run inside it; SIGPIPE ignored (else slirpvde
                dies at the end of every upload); MTU 1500 only: vde_switch and
                vde_plug2tap cut frames at 1518 / 2048 bytes
  pyvde         pyvde-slirp -D -q (ours) on a pyvde-switch --maxframe 65550, the
                namespace attached by pyvde-plug2tap --mtu MTU run inside it
  pyvde-tap     pyvde-slirp -s tap://tap0 --netns /run/netns/NS -D -q --mtu MTU (ours):
                its own tap in the namespace, slirp4netns's set-up

slirpvde and both pyvde: static address 10.0.2.15/24, default route via 10.0.2.2.

Figures, each the median of --trials runs of --duration seconds:

  * iperf3 TCP (one stream) from the namespace to an iperf3 server on the host's
    127.0.0.1 (upload, ns -> host) and back (-R, download), at MTU 1500 and 65520:
    Gbit/s received (end.sum_received); and the router's CPU meanwhile (% of one core,
    kernel time included);
  * connection set-up rate at MTU 1500: a Python client in the namespace doing
    connect + send 1 byte + close to 10.0.2.2 as fast as it can, a server thread here
    accepting on 127.0.0.1 (the namespace's ephemeral ports are widened to 1024-65535,
    so ~64k connections per run is the ceiling).

A router that cannot be set up, dies, or moves nothing gives "failed" in its cells (the
notes say why), never a crash. Everything started is undone at exit (namespaces,
processes -- killed through their Popen objects --, directories), also on Ctrl-C or
SIGTERM.

    python3 bench/slirp_bench.py                     # full run (about 4 minutes)
    python3 bench/slirp_bench.py --quick             # smoke run: 1 trial of 2 s
    python3 bench/slirp_bench.py --quick --only slirp4netns

Needs root (namespaces, taps), iperf3, iproute2, slirp4netns, vde2 (vde_switch,
vde_plug2tap, slirpvde). Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_trial_options, parse_trial_options, wait_for
from plug_bench import Rig, Undo, ns_run, on_signal, run, stop_process, tap_attached
from switch_bench import cpu_seconds

BIN = Path(sys.executable).parent
PYVDE_SWITCH = str(BIN / "pyvde-switch")
PYVDE_PLUG2TAP = str(BIN / "pyvde-plug2tap")
PYVDE_SLIRP = str(BIN / "pyvde-slirp")

ROUTERS = ("slirp4netns", "slirpvde", "pyvde", "pyvde-tap")
LABELS = {"slirp4netns": "slirp4netns", "slirpvde": "slirpvde",
          "pyvde": "pyvde-slirp (switch)", "pyvde-tap": "pyvde-slirp (tap)"}
MAX_MTU = {"slirp4netns": 65520, "slirpvde": 1500, "pyvde": 65520, "pyvde-tap": 65520}
# (ours, theirs): the ratio columns
RATIOS = (("pyvde-tap", "slirp4netns"), ("pyvde", "slirp4netns"), ("pyvde", "slirpvde"))
MTUS = (1500, 65520)
# (kind, MTU): the rows, in order
TESTS = (("up", 1500), ("down", 1500), ("up", 65520), ("down", 65520), ("conn", 1500))
ROW_NAMES = {"up": "upload (ns → host), Gbit/s", "down": "download (host → ns), Gbit/s",
             "conn": "connections/s"}
GATEWAY = "10.0.2.2"
TAP = "tap0"
TAG = f"sb{os.getpid()}"          # names of this run's namespaces

FAILED, NA, NOT_RUN = "failed", "n/a", "not run"

# Run in the namespace: "probe HOST PORT TIMEOUT" (exit 0 once a connection is made) or
# "rate HOST PORT SECONDS" (connect + send 1 byte + close in a loop; prints JSON).
CLIENT = r"""
import json, socket, sys, time
mode, host, port, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
t0 = time.monotonic()
end = t0 + secs
if mode == "probe":
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.sendall(b"p")
            sys.exit(0)
        except OSError:
            time.sleep(0.1)
    sys.exit(1)
n = errors = 0
last = ""
while time.monotonic() < end:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        s.sendall(b"x")
        n += 1
    except OSError as e:
        errors += 1
        last = repr(e)
    finally:
        s.close()
print(json.dumps({"count": n, "errors": errors, "last_error": last,
                  "seconds": time.monotonic() - t0}))
"""


class ConnServer:
    """A TCP server on 127.0.0.1 in a thread: accepts, reads the client's byte (or its
    end), closes; counts the connections accepted."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="conn-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.2):
                    if key.data is None:
                        while True:
                            try:
                                c, _ = self.sock.accept()
                            except (BlockingIOError, InterruptedError):
                                break
                            except OSError:
                                break
                            self.accepted += 1
                            c.setblocking(False)
                            sel.register(c, selectors.EVENT_READ, "conn")
                    else:
                        c = key.fileobj
                        try:
                            c.recv(64)
                        except OSError:
                            pass
                        sel.unregister(c)
                        c.close()
        finally:
            for key in list(sel.get_map().values()):
                if key.data is not None:
                    key.fileobj.close()
            sel.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pyvde_slirp_args(mtu: int) -> list[str]:
    """-s/-D/-q, and --mtu if this pyvde-slirp says it has one."""
    try:
        text = run(PYVDE_SLIRP, "--help", check=False, timeout=10)
        has_mtu = "--mtu" in text.stdout + text.stderr
    except (OSError, subprocess.TimeoutExpired):
        has_mtu = False
    return ["-D", "-q"] + (["--mtu", str(mtu)] if has_mtu else [])


class Testbed(Rig):
    """One router at one MTU, with a namespace behind it whose default route leads to
    10.0.2.2; a context manager that undoes everything it did, in reverse."""

    def __init__(self, router: str, mtu: int, workdir: Path, n: int, conn_port: int):
        self.router, self.mtu, self.conn_port = router, mtu, conn_port
        self.ns = f"{TAG}n{n}"
        self.dir = workdir / f"{router}{n}"
        self.router_proc: subprocess.Popen | None = None
        self.undo = Undo()

    def _spawn(self, what: str, *cmd: str, **kw) -> subprocess.Popen:
        log = open(self.dir / f"{what}.log", "wb")    # noqa: SIM115 -- closed by undo
        self.undo.add(log.close)
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
        self.undo.add(lambda: stop_process(p))
        return p

    def _check_alive(self, p: subprocess.Popen, what: str) -> None:
        if p.poll() is not None:
            raise RuntimeError(f"{what} exited ({p.returncode}): {self.log_tail(what)}")

    def log_tail(self, what: str) -> str:
        try:
            text = (self.dir / f"{what}.log").read_text(errors="replace").strip()
        except OSError:
            return ""
        return " / ".join(text.splitlines()[-3:])[:300] or "no output"

    def _build(self) -> None:
        self.dir.mkdir()
        self.undo.add(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        run("ip", "netns", "add", self.ns)
        self.undo.add(lambda: run("ip", "netns", "del", self.ns, check=False))
        run("ip", "-n", self.ns, "link", "set", "lo", "up")
        # room for the connection-rate client's many short connections (TIME_WAIT)
        ns_run(self.ns, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535",
               "net.ipv4.tcp_tw_reuse=1")
        getattr(self, f"_build_{self.router.replace('-', '_')}")()
        if not self.probe(10):
            raise RuntimeError(f"no TCP connection to {GATEWAY} within 10 s"
                               f" ({self.router}: {self.log_tail('router')})")

    def _build_slirp4netns(self) -> None:
        r, w = os.pipe()
        try:
            self.router_proc = self._spawn(
                "router", "slirp4netns", "--configure", f"--mtu={self.mtu}",
                f"--ready-fd={w}", "--netns-type=path", f"/run/netns/{self.ns}", TAP,
                pass_fds=(w,))
            os.close(w)
            w = -1
            ready, _, _ = select.select([r], [], [], 10)
            if not ready or os.read(r, 16) != b"1":
                self._check_alive(self.router_proc, "router")
                raise RuntimeError("slirp4netns did not say it was ready")
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        self.addr = "10.0.2.100"

    def _build_slirpvde(self) -> None:
        sw = self.dir / "sw"
        # no -d: a console on stdin, which must stay open (EOF ends vde_switch)
        switch = self._spawn("switch", "vde_switch", "-s", str(sw), stdin=subprocess.PIPE)
        self.undo.add(switch.stdin.close)
        wait_for("vde_switch's ctl", lambda: (sw / "ctl").exists() or switch.poll() is not None)
        self._check_alive(switch, "switch")
        # slirpvde dies of SIGPIPE when iperf3's server closes first; SIG_IGN survives exec
        self.router_proc = self._spawn(
            "router", "sh", "-c", 'trap "" PIPE; exec slirpvde -s "$1" -D -q', "sh", str(sw))
        self._attach("vde_plug2tap", "-s", str(sw), TAP)

    def _build_pyvde(self) -> None:
        if not Path(PYVDE_SLIRP).exists():
            raise RuntimeError(f"{PYVDE_SLIRP} does not exist")
        sw = self.dir / "sw"
        switch = self._spawn("switch", PYVDE_SWITCH, "-s", str(sw), "--nostdin",
                             "--maxframe", "65550")
        wait_for("pyvde-switch's ctl", lambda: (sw / "ctl").exists() or switch.poll() is not None)
        self._check_alive(switch, "switch")
        self.router_proc = self._spawn("router", PYVDE_SLIRP, "-s", str(sw),
                                       *pyvde_slirp_args(self.mtu))
        self._attach(PYVDE_PLUG2TAP, "-s", str(sw), "--mtu", str(self.mtu), TAP)

    def _build_pyvde_tap(self) -> None:
        if not Path(PYVDE_SLIRP).exists():
            raise RuntimeError(f"{PYVDE_SLIRP} does not exist")
        self.router_proc = self._spawn(
            "router", PYVDE_SLIRP, "-s", f"tap://{TAP}", "--netns", f"/run/netns/{self.ns}",
            "-D", "-q", "--mtu", str(self.mtu))
        wait_for(f"pyvde-slirp's {TAP}",
                 lambda: tap_attached(self.router_proc.pid, TAP)
                 or self.router_proc.poll() is not None)
        self._check_alive(self.router_proc, "router")
        self._configure()

    def _attach(self, *plug2tap: str) -> None:
        """Runs a plug2tap in the namespace (it makes tap0 there), then gives tap0 the
        MTU, 10.0.2.15/24 and the default route via 10.0.2.2."""
        time.sleep(0.3)                        # the router has joined the switch, or died
        self._check_alive(self.router_proc, "router")
        plug = self._spawn("plug", "ip", "netns", "exec", self.ns, *plug2tap)
        wait_for(f"{plug2tap[0]} on {TAP}",
                 lambda: tap_attached(plug.pid, TAP) or plug.poll() is not None)
        self._check_alive(plug, "plug")
        self._configure()

    def _configure(self) -> None:
        run("ip", "-n", self.ns, "link", "set", TAP, "mtu", str(self.mtu), "up")
        run("ip", "-n", self.ns, "addr", "add", "10.0.2.15/24", "dev", TAP)
        run("ip", "-n", self.ns, "route", "add", "default", "via", GATEWAY)
        self.addr = "10.0.2.15"

    def probe(self, timeout: float) -> bool:
        r = ns_run(self.ns, sys.executable, "-c", CLIENT, "probe", GATEWAY,
                   str(self.conn_port), str(timeout), check=False, timeout=timeout + 10)
        return r.returncode == 0

    def router_cpu(self) -> float:
        try:
            return cpu_seconds(self.router_proc.pid)
        except (OSError, AttributeError):
            return float("nan")

    def iperf(self, reverse: bool, duration: float) -> tuple[float, float]:
        """(Gbit/s received, router CPU share of one core); RuntimeError if none."""
        port = free_port()
        server = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port),
                                   "--idle-timeout", str(int(duration) + 30)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for("the iperf3 server", lambda: server.poll() is not None or run(
                "ss", "-Hltn", f"sport = :{port}").stdout.strip() != "")
            if server.poll() is not None:
                raise RuntimeError(f"the iperf3 server exited ({server.returncode})")
            cpu0, t0 = self.router_cpu(), time.monotonic()
            try:
                r = ns_run(self.ns, "iperf3", "-c", GATEWAY, "-p", str(port),
                           "-t", str(duration), "-J", *(["-R"] if reverse else []),
                           "--connect-timeout", "3000", "--snd-timeout", "3000",
                           check=False, timeout=duration + 20)
            except subprocess.TimeoutExpired:
                raise RuntimeError("iperf3 did not finish") from None
            share = (self.router_cpu() - cpu0) / (time.monotonic() - t0)
            try:
                result = json.loads(r.stdout)
            except json.JSONDecodeError:
                raise RuntimeError(f"iperf3: {r.stderr.strip() or 'no output'}") from None
            received = result.get("end", {}).get("sum_received", {})
            bps = received.get("bits_per_second")
            if not bps:
                raise RuntimeError(f"iperf3: {result.get('error', 'nothing received')}")
            return bps / 1e9, share
        finally:
            stop_process(server)

    def conn_rate(self, server: ConnServer, duration: float) -> tuple[float, float, str]:
        """(connections/s, router CPU share, a note on errors if any)."""
        cpu0, t0 = self.router_cpu(), time.monotonic()
        r = ns_run(self.ns, sys.executable, "-c", CLIENT, "rate", GATEWAY, str(server.port),
                   str(duration), check=False, timeout=duration + 30)
        share = (self.router_cpu() - cpu0) / (time.monotonic() - t0)
        try:
            result = json.loads(r.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"client: {r.stderr.strip()[-300:] or 'no output'}") from None
        if not result["count"]:
            raise RuntimeError(f"no connection made ({result['errors']} errors,"
                               f" last {result['last_error']})")
        note = (f"{result['errors']} failed connects (last: {result['last_error']})"
                if result["errors"] else "")
        return result["count"] / result["seconds"], share, note


def client_ceiling(server: ConnServer, duration: float) -> float | None:
    """Connections/s of the same client straight to the server on 127.0.0.1 (no router,
    no namespace): how far the client itself can go."""
    try:
        r = run(sys.executable, "-c", CLIENT, "rate", "127.0.0.1", str(server.port),
                str(duration), check=False, timeout=duration + 30)
        result = json.loads(r.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as e:
        print(f"# client ceiling: {e!r}", file=sys.stderr)
        return None
    return result["count"] / result["seconds"] if result["count"] else None


class Results:
    def __init__(self) -> None:
        self.ceiling: list[float] = []
        self.values: dict[tuple, list[float]] = {}
        self.cpu: dict[tuple, list[float]] = {}
        self.failures: dict[tuple, int] = {}
        self.notes: list[str] = []

    def add(self, key: tuple, value: float, cpu: float) -> None:
        self.values.setdefault(key, []).append(value)
        self.cpu.setdefault(key, []).append(cpu)

    def fail(self, keys: list[tuple], why: str) -> None:
        """One note for the tests in keys (one router at one MTU), each counted failed."""
        for key in keys:
            self.failures[key] = self.failures.get(key, 0) + 1
        router, mtu = keys[0][0], keys[0][1][1]
        kinds = "all tests" if len(keys) > 1 else keys[0][1][0]
        note = f"{LABELS[router]}, MTU {mtu} {kinds}: {why}"
        print(f"# {note}", file=sys.stderr)
        self.notes.append(note)

    def median(self, key: tuple) -> float | None:
        v = self.values.get(key)
        return statistics.median(v) if v else None


def run_setup(router: str, mtu: int, args, work: Path, n: int, server: ConnServer,
              res: Results) -> None:
    """One router at one MTU: builds it and runs that MTU's tests; failures are noted."""
    tests = [t for t in TESTS if t[1] == mtu]
    done: set = set()
    try:
        with Testbed(router, mtu, work, n, server.port) as tb:
            for test in tests:
                key = (router, test)
                done.add(test)
                rp = tb.router_proc
                if rp is not None and rp.poll() is not None:
                    res.fail([key], f"the router had exited ({rp.returncode}):"
                                    f" {tb.log_tail('router')}")
                    continue
                try:
                    if test[0] == "conn":
                        value, cpu, note = tb.conn_rate(server, args.duration)
                        if note:
                            res.notes.append(f"{LABELS[router]}, connections: {note}")
                    else:
                        value, cpu = tb.iperf(test[0] == "down", args.duration)
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    if rp is not None and rp.poll() is not None:
                        e = RuntimeError(f"{e}; the router exited ({rp.returncode}):"
                                         f" {tb.log_tail('router')}")
                    res.fail([key], str(e))
                    continue
                res.add(key, value, cpu)
                unit = "conn/s" if test[0] == "conn" else "Gbit/s"
                print(f"# {LABELS[router]}, MTU {mtu} {test[0]}: {value:.3f} {unit},"
                      f" router CPU {100 * cpu:.0f}%", file=sys.stderr)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        left = [(router, t) for t in tests if t not in done]
        if left:
            res.fail(left, f"set-up: {e}")
        else:
            res.notes.append(f"{LABELS[router]}, MTU {mtu}: clean-up: {e}")


def fmt(kind: str, v: float | None) -> str:
    if v is None:
        return FAILED
    return f"{v:,.0f}" if kind == "conn" else f"{v:.2f}"


def report(args, routers: list[str], res: Results) -> None:
    def cell(router: str, test: tuple) -> str:
        if test[1] > MAX_MTU[router]:
            return NA
        if router not in routers:
            return NOT_RUN
        return fmt(test[0], res.median((router, test)))

    def ratio(a: str, b: str, test: tuple) -> str:
        if test[1] > MAX_MTU[a] or test[1] > MAX_MTU[b]:
            return NA
        if a not in routers or b not in routers:
            return NOT_RUN
        x, y = res.median((a, test)), res.median((b, test))
        return "—" if x is None or not y else f"{x / y:.2f}x"

    print("Reproduce: .venv/bin/python bench/slirp_bench.py"
          f" {shlex.join(sys.argv[1:])}".rstrip())
    print(f"({args.trials} trial(s) of {args.duration:g} s per figure, median; iperf3 TCP,"
          f" one stream, to 127.0.0.1 via {GATEWAY})\n")
    def short(r: str) -> str:
        return {"pyvde": "pyvde (switch)", "pyvde-tap": "pyvde (tap)"}.get(r, r)

    print("| test | " + " | ".join(LABELS[r] for r in ROUTERS) + " | "
          + " | ".join(f"{short(a)} / {b}" for a, b in RATIOS) + " |")
    print("|---|" + "---:|" * (len(ROUTERS) + len(RATIOS)))
    for test in TESTS:
        kind, mtu = test
        print(f"| MTU {mtu} {ROW_NAMES[kind]} | "
              + " | ".join(cell(r, test) for r in ROUTERS) + " | "
              + " | ".join(ratio(a, b, test) for a, b in RATIOS) + " |")
    if res.ceiling:
        print(f"\nThe connection client's own ceiling (straight to 127.0.0.1, no router):"
              f" {statistics.median(res.ceiling):,.0f} connections/s.")
    print("\nThe router's CPU meanwhile, % of one core (kernel time included):\n")
    print("| test | " + " | ".join(LABELS[r] for r in ROUTERS) + " |")
    print("|---|" + "---:|" * len(ROUTERS))
    for test in TESTS:
        kind, mtu = test
        cells = []
        for r in ROUTERS:
            c = cell(r, test)
            if c not in (NA, NOT_RUN, FAILED):
                c = f"{100 * statistics.median(res.cpu[r, test]):.0f}"
            cells.append(c)
        print(f"| MTU {mtu} {ROW_NAMES[kind].split(',')[0]} | " + " | ".join(cells) + " |")
    if res.ceiling:
        top = statistics.median(res.ceiling)
        for r in routers:
            v = res.median((r, ("conn", 1500)))
            if v is not None and v > 0.8 * top:
                res.notes.append(f"{LABELS[r]}: {v:,.0f} connections/s is near the client's"
                                 f" own ceiling ({top:,.0f}/s): a lower bound")
    partial = [f"{LABELS[r]}, MTU {t[1]} {t[0]}: {n} of {args.trials} trials failed"
               for (r, t), n in res.failures.items() if (r, t) in res.values]
    if res.notes or partial:
        print()
        for note in partial + res.notes:
            print(f"* {note}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_options(ap, 2.0)
    ap.add_argument("--only", action="append", choices=ROUTERS, metavar="NAME",
                    help=f"run only this router (repeatable): {', '.join(ROUTERS)}")
    args = parse_trial_options(ap)
    if os.geteuid() != 0:
        print("slirp_bench: needs root (network namespaces, tap devices)", file=sys.stderr)
        return 2
    # SIGINT and SIGTERM unwind through every clean-up, so nothing is left behind
    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_signal)
    routers = [r for r in ROUTERS if not args.only or r in args.only]
    res = Results()
    n = 0
    try:
        with Undo() as undo:
            work = Path(tempfile.mkdtemp(prefix="pvslirpbench", dir="/tmp"))
            undo.add(lambda: shutil.rmtree(work, ignore_errors=True))
            server = ConnServer()
            undo.add(server.close)
            for _ in range(args.trials):
                ceiling = client_ceiling(server, args.duration)
                if ceiling:
                    res.ceiling.append(ceiling)
                    print(f"# client ceiling: {ceiling:.0f} conn/s", file=sys.stderr)
                for mtu in MTUS:
                    for router in routers:
                        if mtu > MAX_MTU[router]:
                            continue
                        n += 1
                        run_setup(router, mtu, args, work, n, server, res)
    except KeyboardInterrupt:
        print("slirp_bench: interrupted; everything it started is cleaned up", file=sys.stderr)
        return 130
    report(args, routers, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
