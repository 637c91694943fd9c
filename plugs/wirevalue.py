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
