#!/usr/bin/env python3
"""VLAN forwarding and capture cost: pyvde-switch against itself and against vde_switch.

Same harness and load generator as switch_bench.py (one sender -> one receiver, unicast,
64-byte frames, median of --trials runs). Every VLAN scenario is configured identically
on both switches through their consoles before the clients connect:

    python3 bench/vlan_bench.py              # full run, prints a markdown table
    python3 bench/vlan_bench.py --quick      # smoke run

Scenarios: no VLAN configured (baseline); 10 VLANs defined and both ports untagged
members of VLAN 10; both ports trunks (tagged members of VLAN 10) with tagged frames;
tag stripped (tagged in, untagged out); tag inserted (untagged in, tagged out). Then
pyvde-switch alone with `port/capture` on the receiving port against the same run
without capture.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_trial_options, parse_trial_options
from switch_bench import Switch, build_loadgen, trial

VLANS = tuple(f"vlan/create {v}" for v in range(10, 20))
PORTS = ("port/create 1", "port/create 2")

# (name, setup commands, (sender VID, receiver VID))
SCENARIOS = [
    ("untagged, no VLAN configured", (), (None, None)),
    ("untagged, access ports in VLAN 10 of 10", VLANS + PORTS + ("port/setvlan 1 10", "port/setvlan 2 10"),
     (None, None)),
    ("tagged VLAN 10, trunk -> trunk", VLANS + PORTS + ("vlan/addport 10 1", "vlan/addport 10 2"),
     (10, 10)),
    ("tagged in, untagged out (tag stripped)", VLANS + PORTS + ("vlan/addport 10 1", "port/setvlan 2 10"),
     (10, None)),
    ("untagged in, tagged out (tag inserted)", VLANS + PORTS + ("port/setvlan 1 10", "vlan/addport 10 2"),
     (None, 10)),
]


def median_rate(kind, work, setup, vlans, args, size=64, query=()):
    runs, answers = [], []
    for _ in range(args.trials):
        sw = Switch(kind, work, setup, query)
        runs.append(trial(sw, "unicast", size, 1, args.duration, (1, 2), vlans))
        answers.append(sw.answers)
    print(f"#   {kind}: {[round(r[0]) for r in runs]} frames/s", file=sys.stderr)
    result = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    return (*result, answers) if query else result


def captured_share(answers) -> float:
    """Of the frames the capture saw, the share written to the file (not dropped)."""
    shares = []
    for (reply,) in answers:
        m = re.search(r" frames (\d+) bytes \d+ dropped (\d+)", reply)
        frames, dropped = int(m.group(1)), int(m.group(2))
        shares.append(frames / (frames + dropped) if frames + dropped else 1.0)
    return statistics.median(shares)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trial_options(ap, 1.0)
    args = parse_trial_options(ap)
    build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="pvbench", dir="/tmp"))
    rows, capture_rows = [], []
    try:
        for name, setup, vlans in SCENARIOS:
            print(f"# {name}", file=sys.stderr)
            rows.append((name, median_rate("pyvde", work, setup, vlans, args),
                         median_rate("vde_switch", work, setup, vlans, args)))
        for size in (64, 1514):
            print(f"# capture, {size} B", file=sys.stderr)
            plain = median_rate("pyvde", work, PORTS, (None, None), args, size)
            cap = median_rate("pyvde", work, PORTS + (f"port/capture 2 {work}/cap.pcap",),
                              (None, None), args, size, query=("port/capture 2",))
            capture_rows.append((size, plain, cap))
            (work / "cap.pcap").unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0][1][0]
    print("| scenario (1 -> 1, 64 B) | pyvde-switch frames/s | vs pyvde without VLANs |"
          " vde_switch frames/s | ratio to vde_switch | switch CPU µs/frame pyvde / vde_switch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours[0]:,.0f} | {ours[0] / base:.2f} | {theirs[0]:,.0f} |"
              f" {ours[0] / theirs[0]:.2f}x | {ours[1]:.2f} / {theirs[1]:.2f} |")
    print()
    print("| capture on the receiving port (pyvde-switch) | without capture frames/s |"
          " with capture frames/s | throughput kept | frames written to the file |"
          " switch CPU µs/frame without / with |")
    print("|---|---:|---:|---:|---:|---:|")
    for size, plain, cap in capture_rows:
        print(f"| 1 -> 1, {size} B | {plain[0]:,.0f} | {cap[0]:,.0f} | {cap[0] / plain[0]:.0%} |"
              f" {captured_share(cap[2]):.0%} | {plain[1]:.2f} / {cap[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
