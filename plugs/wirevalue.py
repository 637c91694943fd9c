"""wirefilter's value syntax (vde-protocol.md §8.2), pure:

    [LR|RL] value [+ variation] [K|M|G] [U|N] [ '[' markov_node ']' ]

No direction prefix means both directions; `value+variation` is drawn per packet in
value ± variation, uniformly (U, the default) or normally (N: sigma = variation / 3);
K, M, G multiply by 2^10, 2^20, 2^30; `[n]` applies the value to Markov node n.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

LR, RL = "LR", "RL"
MULTIPLIERS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

_VALUE = re.compile(
    r"""\s*(?P<dir>LR|RL)?\s*
        (?P<value>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)
        (?:\s*\+\s*(?P<var>[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?
        \s*(?P<mult>[KMG])?
        \s*(?P<dist>[UN])?
        \s*(?:\[\s*(?P<node>[0-9]+)\s*\])?\s*""", re.VERBOSE)


class WireValueError(ValueError):
    """str() names what is wrong with the value."""


@dataclass(frozen=True)
class WireValue:
    directions: tuple[str, ...]   # ("LR", "RL"), ("LR",) or ("RL",)
    value: float
    variation: float = 0.0
    distribution: str = "U"       # "U" uniform, "N" normal
    node: int = 0

    def text(self) -> str:
        """As wirefilter's showinfo prints a value: VALUE+VARIATION and U or N."""
        return f"{_num(self.value)}+{_num(self.variation)}{self.distribution}"


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


def parse(text: str, max_nodes: int = 1 << 16) -> WireValue:
    m = _VALUE.fullmatch(text)
    if not m:
        raise WireValueError(f"'{text}' is not a value like [LR|RL]20[+5][K|M|G][U|N][[node]]")
    mult = MULTIPLIERS[m.group("mult") or ""]
    value = float(m.group("value")) * mult
    variation = float(m.group("var") or 0) * mult
    if not (math.isfinite(value) and math.isfinite(variation)):
        raise WireValueError(f"'{text}': the number is too large")
    node = int(m.group("node") or 0)
    if node >= max_nodes:
        raise WireValueError(f"'{text}': Markov node {node} does not exist (0..{max_nodes - 1})")
    d = m.group("dir")
    return WireValue((d,) if d else (LR, RL), value, variation, m.group("dist") or "U", node)


# ---------------------------------------------------------------- netem's models
#
# Beyond wirefilter, pyvde-wirefilter has tc-netem(8)'s models. Their values keep
# wirefilter's direction prefix and Markov node suffix, and netem's own words in
# between, separated by commas or spaces:
#
#     [LR|RL] netem-arguments [ '[' markov_node ']' ]
#
# gemodel P[,R[,1-H[,1-K]]]               Gilbert-Elliott loss, percent (netem defaults:
#                                          R = 100 - P, 1-H = 100, 1-K = 0)
# loss-state P13[,P31[,P32[,P23[,P14]]]]  4-state loss, percent (P31 = 100 - P13, P32 = 0,
#                                          P23 = 100, P14 = 0)
# loss-corr, delay-corr, dup-corr PCT     correlation of consecutive draws, percent
# delay-distribution uniform|normal|pareto|paretonormal
# reorder PCT[,CORR]                      frames sent at once, ahead of the delayed ones
# reorder-gap N                           at most one reordered frame every N
# corrupt PCT[,CORR]                      frames with one bit flipped
# discard-corrupt 0|1                     damaged frames are dropped (an FCS check)
# rate RATE[,OVERHEAD[,CELLSIZE[,CELLOVERHEAD]]]   RATE as tc: 100mbit, 12kbps, 1gbit;
#                                          a bare number is bit/s as in tc
# slot MIN[,MAX][,packets N][,bytes N]    delivery slots MIN..MAX ms apart

DISTRIBUTIONS = {"uniform": 0, "normal": 1, "pareto": 2, "paretonormal": 3}
_RATE_UNITS = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "tbit": 1e12 / 8,
               "bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "tbps": 1e12,
               "kibit": 1024 / 8, "mibit": 1024 ** 2 / 8, "gibit": 1024 ** 3 / 8,
               "kibps": 1024, "mibps": 1024 ** 2, "gibps": 1024 ** 3}
_NETEM = re.compile(r"\s*(?P<dir>LR|RL)?(?P<body>.*?)(?:\[\s*(?P<node>[0-9]+)\s*\])?\s*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


@dataclass(frozen=True)
class NetemValue:
    name: str
    directions: tuple[str, ...]
    values: tuple            # numbers (floats) in netem's order, or a distribution name
    node: int = 0

    def text(self) -> str:
        """As showinfo prints it: the values with netem's defaults filled in."""
        v = self.values
        if self.name == "rate":
            return ",".join([_bits(v[0]), *(_num(x) for x in v[1:])])
        if self.name == "slot":
            return ",".join([_num(v[0]), _num(v[1])]
                            + [f"{k} {_num(x)}" for k, x in zip(("packets", "bytes"), v[2:])
                               if x])
        return ",".join(x if isinstance(x, str) else _num(x) for x in v)


def _bits(rate: float) -> str:
    """bytes/s as tc writes a rate: 10mbit, 64kbit, 1gbit."""
    bits = rate * 8
    for unit, size in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits >= size and round(bits / size, 6) == round(bits / size):
            return f"{round(bits / size)}{unit}"
    return f"{_num(round(bits, 3))}bit"


def _percent(name: str, word: str) -> float:
    if not _NUMBER.fullmatch(word.rstrip("%")):
        raise WireValueError(f"{name}: '{word}' is not a percentage")
    x = float(word.rstrip("%"))
    if x > 100:
        raise WireValueError(f"{name}: {word} is more than 100 percent")
    return x


def _rate(word: str) -> float:
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([a-zA-Z]*)", word)
    unit = (m.group(2) or "bit").lower() if m else ""
    if not m or unit not in _RATE_UNITS:
        raise WireValueError(f"rate: '{word}' is not a rate like 100mbit, 12kbps or 1gbit")
    return float(m.group(1)) * _RATE_UNITS[unit]


def _count(name: str, word: str, low: int = 0) -> int:
    if not word.isdigit() or int(word) < low or int(word) >= 1 << 32:
        raise WireValueError(f"{name}: '{word}' is not a whole number from {low}")
    return int(word)


def _ms(name: str, word: str) -> float:
    if not _NUMBER.fullmatch(word):
        raise WireValueError(f"{name}: '{word}' is not a time in milliseconds")
    return float(word)


def _args(name: str, words: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(words) <= high:
        raise WireValueError(f"{name}: expected {usage}")


def parse_netem(name: str, text: str, max_nodes: int = 1 << 16) -> NetemValue:
    """One of the netem settings above, from its option or console argument."""
    m = _NETEM.fullmatch(text)
    words = [w for w in re.split(r"[,\s]+", m.group("body")) if w]
    node = int(m.group("node") or 0)
    if node >= max_nodes:
        raise WireValueError(f"'{text}': Markov node {node} does not exist (0..{max_nodes - 1})")
    if name == "gemodel":
        _args(name, words, 1, 4, "P[,R[,1-H[,1-K]]] (percent)")
        p = [_percent(name, w) for w in words]
        values = tuple(p + [100 - p[0], 100.0, 0.0][len(p) - 1:])
    elif name == "loss-state":
        _args(name, words, 1, 5, "P13[,P31[,P32[,P23[,P14]]]] (percent)")
        p = [_percent(name, w) for w in words]
        values = tuple(p + [100 - p[0], 0.0, 100.0, 0.0][len(p) - 1:])
        if values[1] + values[2] > 100 or values[0] + values[4] > 100:
            raise WireValueError(f"{name}: the transitions out of a state add up to more than"
                                 " 100 percent")
    elif name in ("loss-corr", "delay-corr", "dup-corr"):
        _args(name, words, 1, 1, "a correlation in percent")
        values = (_percent(name, words[0]),)
    elif name == "delay-distribution":
        if len(words) != 1 or words[0] not in DISTRIBUTIONS:
            raise WireValueError(f"{name}: expected one of {', '.join(DISTRIBUTIONS)}")
        values = (words[0],)
    elif name in ("reorder", "corrupt"):
        _args(name, words, 1, 2, "PERCENT[,CORRELATION]")
        values = tuple(_percent(name, w) for w in words) + ((0.0,) if len(words) == 1 else ())
    elif name == "reorder-gap":
        _args(name, words, 1, 1, "a number of frames (1 or more)")
        values = (float(_count(name, words[0], 1)),)
    elif name == "discard-corrupt":
        if words not in (["0"], ["1"]):
            raise WireValueError(f"{name}: expected 0 or 1")
        values = (float(words[0]),)
    elif name == "rate":
        _args(name, words, 1, 4, "RATE[,OVERHEAD[,CELLSIZE[,CELLOVERHEAD]]]")
        rate = _rate(words[0])
        rest = []
        for i, w in enumerate(words[1:]):
            if not re.fullmatch(r"-?[0-9]+", w) or (i == 1 and w.startswith("-")):
                raise WireValueError(f"rate: '{w}' is not a number of bytes")
            rest.append(float(w))
        values = (rate, *rest, *[0.0] * (3 - len(rest)))
    elif name == "slot":
        times, packets, nbytes, i = [], 0, 0, 0
        while i < len(words):
            if words[i] in ("packets", "bytes") and i + 1 < len(words):
                if words[i] == "packets":
                    packets = _count(name, words[i + 1], 1)
                else:
                    nbytes = _count(name, words[i + 1], 1)
                i += 2
            else:
                times.append(_ms(name, words[i]))
                i += 1
        if not 1 <= len(times) <= 2:
            raise WireValueError(f"{name}: expected MIN[,MAX][,packets N][,bytes N] (ms)")
        lo, hi = times[0], times[-1]
        if hi < lo:
            raise WireValueError(f"{name}: MAX {_num(hi)} is less than MIN {_num(lo)}")
        values = (lo, hi, float(packets), float(nbytes))
    else:
        raise WireValueError(f"{name}: not a netem setting")
    d = m.group("dir")
    return NetemValue(name, (d,) if d else (LR, RL), values, node)


NETEM_SETTINGS = ("gemodel", "loss-state", "loss-corr", "delay-distribution", "delay-corr",
                  "dup-corr", "reorder", "reorder-gap", "corrupt", "discard-corrupt", "rate",
                  "slot")
