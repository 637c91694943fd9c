"""wirefilter's value syntax: [LR|RL]value[+variation][K|M|G][U|N][[node]] (§8.2)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugs.wirevalue import (
    LR,
    RL,
    NetemValue,
    WireValue,
    WireValueError,
    parse,
    parse_netem,
)


@pytest.mark.parametrize("text,expected", [
    ("5", WireValue((LR, RL), 5.0)),
    ("20.5", WireValue((LR, RL), 20.5)),
    ("LR20.5", WireValue((LR,), 20.5)),
    ("RL10", WireValue((RL,), 10.0)),
    ("100+20N", WireValue((LR, RL), 100.0, 20.0, "N")),
    ("100+20", WireValue((LR, RL), 100.0, 20.0, "U")),
    ("128K", WireValue((LR, RL), 131072.0)),
    ("1M", WireValue((LR, RL), 1048576.0)),
    ("2G", WireValue((LR, RL), 2.0 * (1 << 30))),
    ("1+1K", WireValue((LR, RL), 1024.0, 1024.0)),     # the multiplier scales both
    ("50[1]", WireValue((LR, RL), 50.0, node=1)),
    ("LR 10 + 2 N [3]", WireValue((LR,), 10.0, 2.0, "N", 3)),
    (".5", WireValue((LR, RL), 0.5)),
])
def test_values(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["", "LR", "x", "-5", "5%", "5+", "5KK", "5[", "5[x]",
                                  "LRRL5", "5 N U", "1e3"])
def test_bad_values_name_the_text(text):
    with pytest.raises(WireValueError) as e:
        parse(text)
    assert repr(text)[1:-1] in str(e.value) or text == ""


def test_node_range_and_showinfo_text():
    with pytest.raises(WireValueError, match="node 2 does not exist"):
        parse("5[2]", max_nodes=2)
    assert parse("20.5").text() == "20.5+0U"
    assert parse("100+20N").text() == "100+20N"
    assert parse("128K").text() == "131072+0U"


@given(st.text(max_size=40))
def test_anything_parses_or_says_why(text):
    try:
        v = parse(text)
    except WireValueError:
        return
    assert v.value >= 0 and v.variation >= 0 and v.distribution in "UN"


# ---------------------------------------------------------------- netem's values


@pytest.mark.parametrize("name,text,values,shown", [
    ("gemodel", "1", (1, 99, 100, 0), "1,99,100,0"),          # netem's defaults
    ("gemodel", "1,10", (1, 10, 100, 0), "1,10,100,0"),
    ("gemodel", "5 25 70 0.1", (5, 25, 70, 0.1), "5,25,70,0.1"),
    ("loss-state", "2", (2, 98, 0, 100, 0), "2,98,0,100,0"),
    ("loss-state", "5,50,10,30,1", (5, 50, 10, 30, 1), "5,50,10,30,1"),
    ("delay-distribution", "paretonormal", ("paretonormal",), "paretonormal"),
    ("reorder", "25", (25, 0), "25,0"),
    ("reorder", "25%,50", (25, 50), "25,50"),
    ("reorder-gap", "5", (5,), "5"),
    ("corrupt", "0.1", (0.1, 0), "0.1,0"),
    ("rate", "10mbit", (1_250_000, 0, 0, 0), "10mbit,0,0,0"),
    ("rate", "100kbps,-4", (100_000, -4, 0, 0), "800kbit,-4,0,0"),
    ("rate", "1000", (125, 0, 0, 0), "1kbit,0,0,0"),              # bare: bit/s, as tc
    ("rate", "1mbit,0,48,5", (125_000, 0, 48, 5), "1mbit,0,48,5"),
    ("slot", "10", (10, 10, 0, 0), "10,10"),
    ("slot", "5,15 packets 4 bytes 3000", (5, 15, 4, 3000), "5,15,packets 4,bytes 3000"),
])
def test_netem_values(name, text, values, shown):
    v = parse_netem(name, text)
    assert v == NetemValue(name, (LR, RL), values) and v.text() == shown


def test_netem_direction_and_node():
    v = parse_netem("gemodel", "RL 1,10 [2]", max_nodes=3)
    assert (v.directions, v.node, v.values[:2]) == ((RL,), 2, (1, 10))


@pytest.mark.parametrize("name,text,message", [
    ("gemodel", "", "gemodel: expected P[,R[,1-H[,1-K]]]"),
    ("gemodel", "101", "gemodel: 101 is more than 100 percent"),
    ("loss-state", "5,60,50", "transitions out of a state add up to more than 100"),
    ("reorder-gap", "0", "reorder-gap: '0' is not a whole number from 1"),
    ("rate", "10 furlongs", "rate: 'furlongs' is not a number of bytes"),
    ("rate", "fast", "rate: 'fast' is not a rate"),
    ("rate", "1mbit,0,-48", "rate: '-48' is not a number of bytes"),
    ("slot", "20,10", "slot: MAX 10 is less than MIN 20"),
    ("slot", "packets 5", "slot: expected MIN[,MAX]"),
    ("delay-distribution", "cauchy", "expected one of uniform, normal, pareto, paretonormal"),
    ("discard-corrupt", "2", "discard-corrupt: expected 0 or 1"),
    ("gemodel", "1[1]", "Markov node 1 does not exist (0..0)"),
])
def test_bad_netem_values_say_what_is_wrong(name, text, message):
    with pytest.raises(WireValueError) as e:
        parse_netem(name, text, max_nodes=1)
    assert message in str(e.value)
