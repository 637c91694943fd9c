"""pyvde-wirefilter's command line (vde-protocol.md §8.2), pure: argv in, WireOptions out,
or WireUsageError with one line naming the option.

Impairment options take wirefilter's value syntax (wirevalue.py) and may be given twice
for the two directions (`-l LR20 -l RL10`); a value without LR/RL sets both.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

from .wirevalue import (
    LR,
    NETEM_SETTINGS,
    RL,
    NetemValue,
    WireValue,
    WireValueError,
    parse,
    parse_netem,
)

# option name -> (short, long names, what it is)
IMPAIRMENTS = {
    "loss": ("-l", ["--loss"], "loss, percent"),
    "lostburst": ("-L", ["--lostburst"], "mean length of loss bursts (Gilbert model)"),
    "delay": ("-d", ["--delay"], "extra delay, milliseconds"),
    "dup": ("-D", ["--dup"], "duplication, percent"),
    "band": ("-b", ["--band"], "channel bandwidth, bytes/s"),
    "speed": ("-s", ["--speed"], "interface speed, bytes/s"),
    "capacity": ("-c", ["--chanbufsize", "--capacity"], "channel buffer, bytes"),
    "noise": ("-n", ["--noise"], "damaged bits per megabyte"),
    "mtu": ("-m", ["--mtu"], "frames longer than this are dropped"),
}


class WireUsageError(Exception):
    """str() is one line: the option and what is wrong with it."""


@dataclass
class WireOptions:
    left: str = ""                  # VNL or "-" (stdin/stdout)
    right: str = ""
    dpipe: bool = False             # no VNLs: a dpipe chain on stdin/stdout (+ ALTERNATE_*)
    values: dict[str, dict[str, WireValue]] = field(default_factory=dict)  # name -> dir -> value
    netem: dict[str, dict[str, NetemValue]] = field(default_factory=dict)  # the same, netem's
    fifo: bool = True
    rcfile: str | None = None
    mgmt: str | None = None
    mgmtmode: int = 0o700
    daemon: bool = False
    pidfile: str | None = None
    blink: str | None = None
    blinkid: str | None = None
    seed: int | None = None

    def value(self, name: str, direction: str) -> WireValue | None:
        return self.values.get(name, {}).get(direction)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise WireUsageError(message)


def _parser() -> _Parser:
    p = _Parser(prog="pyvde-wirefilter", add_help=False, allow_abbrev=False)
    for name, (short, longs, help_) in IMPAIRMENTS.items():
        p.add_argument(short, *longs, dest=name, action="append", default=[], help=help_)
    for name in NETEM_SETTINGS:
        if name != "discard-corrupt":
            p.add_argument(f"--{name}", dest=name, action="append", default=[])
    p.add_argument("--discard-corrupt", dest="discard_corrupt", action="store_true")
    p.add_argument("-N", "--nofifo", action="store_true")
    p.add_argument("-f", "--rcfile")
    p.add_argument("-M", "--mgmt")
    p.add_argument("--mgmtmode")
    p.add_argument("-v", "--vde-plug", dest="plugs")
    p.add_argument("--daemon", action="store_true")
    p.add_argument("--pidfile")
    p.add_argument("--blink")
    p.add_argument("--blinkid")
    p.add_argument("--seed")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("vnls", nargs="*")
    return p


def _glue_values(argv: list[str]) -> list[str]:
    """`-v -:/tmp/s2`: a value may start with '-' (getopt takes it; argparse would not)."""
    out, i = [], 0
    takes = {"-v", "--vde-plug"} | {s for s, _, _ in IMPAIRMENTS.values()} | {
        n for _, longs, _ in IMPAIRMENTS.values() for n in longs} | {
        f"--{n}" for n in NETEM_SETTINGS if n != "discard-corrupt"}
    while i < len(argv):
        if argv[i] in takes and i + 1 < len(argv):
            opt = argv[i] if argv[i].startswith("--") else {"-v": "--vde-plug"}.get(
                argv[i], argv[i])
            out.append(f"{opt}={argv[i + 1]}" if opt.startswith("--") else opt + argv[i + 1])
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def parse_args(argv: list[str]) -> WireOptions:
    ns = _parser().parse_intermixed_args(_glue_values(argv))
    if ns.help:
        raise WireUsageError("help")
    o = WireOptions(fifo=not ns.nofifo, rcfile=ns.rcfile, mgmt=ns.mgmt, daemon=ns.daemon,
                    pidfile=ns.pidfile, blink=ns.blink, blinkid=ns.blinkid)
    for name, (short, longs, _) in IMPAIRMENTS.items():
        for text in getattr(ns, name):
            try:
                v = parse(text)
            except WireValueError as e:
                raise WireUsageError(f"option {longs[0]}: {e}") from None
            if name == "mtu" and (v.variation or v.value != int(v.value)):
                raise WireUsageError(f"option --mtu: '{text}' must be a whole number of bytes")
            if name in ("loss", "dup") and v.value > 100:
                raise WireUsageError(f"option {longs[0]}: {v.value:g} is more than 100 percent")
            if v.node:
                raise WireUsageError(f"option {longs[0]}: '{text}': Markov nodes other than 0"
                                     " exist only after markov-numnodes (rc file, console)")
            for d in v.directions:
                o.values.setdefault(name, {})[d] = v
    for name in NETEM_SETTINGS:
        texts = ["1"] if name == "discard-corrupt" and ns.discard_corrupt else (
            [] if name == "discard-corrupt" else getattr(ns, name))
        for text in texts:
            try:
                nv = parse_netem(name, text, max_nodes=1)
            except WireValueError as e:
                raise WireUsageError(f"option --{name}: {e}".replace(
                    f"--{name}: {name}: ", f"--{name}: ")) from None
            for d in nv.directions:
                o.netem.setdefault(name, {})[d] = nv
    if ns.mgmtmode is not None:
        if not re.fullmatch(r"[0-7]{1,4}", ns.mgmtmode):
            raise WireUsageError(f"option --mgmtmode: '{ns.mgmtmode}' is not an octal mode")
        o.mgmtmode = int(ns.mgmtmode, 8)
    if ns.seed is not None:
        if not re.fullmatch(r"[0-9]{1,20}", ns.seed) or int(ns.seed) >= 1 << 64:
            raise WireUsageError(f"option --seed: '{ns.seed}' is not a number 0..2^64-1")
        o.seed = int(ns.seed)
    if ns.plugs is not None:
        if ns.vnls:
            raise WireUsageError("give the two sides either with -v LEFT:RIGHT or as two"
                                 " arguments, not both")
        left, sep, right = _split_plugs(ns.plugs)
        if not sep or not left or not right:
            raise WireUsageError(f"option -v: '{ns.plugs}' is not LEFT:RIGHT")
        o.left, o.right = left, right
    elif len(ns.vnls) == 2:
        o.left, o.right = ns.vnls
    elif not ns.vnls:
        o.dpipe = True
    else:
        raise WireUsageError(f"expected two sides (VNLs or -), got {len(ns.vnls)}:"
                             f" {' '.join(ns.vnls)}")
    return o


def _split_plugs(text: str) -> tuple[str, str, str]:
    """LEFT:RIGHT, where a side may itself contain '://' (vde:///tmp/s1:vde:///tmp/s2)."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == ":" and depth == 0 and not text.startswith("//", i + 1):
            return text[:i], ":", text[i + 1:]
    return text, "", ""


__all__ = ["IMPAIRMENTS", "LR", "RL", "WireOptions", "WireUsageError", "parse_args"]
