"""wirefilter's value syntax: [LR|RL]value[+variation][K|M|G][U|N][[node]] (§8.2)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugs.wirevalue import LR, RL, WireValue, WireValueError, parse


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
