"""The pure parts of pyvde-cable's engine (cffi_build/cable.c) through cffi: the replay
window against a model of it, sealing and opening."""
from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from plugs._cable import ffi, lib

WINDOW = 1024


def window():
    return ffi.new("struct cable_replay *")


def check(r, counter: int) -> bool:
    return lib.cable_replay_check(r, counter) == 0


def test_window_edges():
    r = window()
    assert check(r, 5000)
    assert check(r, 5000 - WINDOW + 1)          # the oldest the window still holds
    assert not check(r, 5000 - WINDOW)          # one older: refused
    assert not check(r, 5000) and not check(r, 5000 - WINDOW + 1)   # seen
    assert check(r, 5000 + WINDOW)              # a jump of exactly the window
    assert not check(r, 5000)                   # now too old
    assert not check(r, 0)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 5000), max_size=300))
def test_window_against_a_model(counters):
    """Accepted exactly when not seen before and within WINDOW of the highest accepted."""
    r = window()
    seen: set[int] = set()
    top = -1
    for c in counters:
        want = c not in seen and (top < 0 or c > top - WINDOW)
        assert check(r, c) == want, (c, top)
        if want:
            seen.add(c)
            top = max(top, c)


@given(st.binary(min_size=0, max_size=1600), st.integers(0, 2**32 - 1),
       st.integers(0, 2**64 - 1))
def test_seal_then_open(frame, index, counter):
    key = os.urandom(32)
    out = ffi.new("uint8_t[]", len(frame) + 29)
    n = lib.cable_seal(key, index, counter, frame, len(frame), out)
    assert n == len(frame) + 29
    data = ffi.buffer(out, n)[:]
    assert data[0] == 3 and int.from_bytes(data[1:5], "little") == index
    assert int.from_bytes(data[5:13], "little") == counter
    if len(frame) >= 16:
        assert frame not in data                      # not in clear
    back = ffi.new("uint8_t[]", max(1, len(frame)))
    assert lib.cable_open(key, data, n, back) == len(frame)
    assert ffi.buffer(back, len(frame))[:] == frame


@given(st.binary(min_size=14, max_size=200), st.data())
def test_any_change_fails_to_open(frame, data):
    key = os.urandom(32)
    out = ffi.new("uint8_t[]", len(frame) + 29)
    n = lib.cable_seal(key, 7, 9, frame, len(frame), out)
    sealed = bytearray(ffi.buffer(out, n)[:])
    i = data.draw(st.integers(1, n - 1))             # header (index, counter), body, tag
    sealed[i] ^= data.draw(st.integers(1, 255))
    back = ffi.new("uint8_t[]", len(frame))
    assert lib.cable_open(key, bytes(sealed), n, back) == -1
    assert lib.cable_open(os.urandom(32), ffi.buffer(out, n)[:], n, back) == -1   # other key
    assert lib.cable_open(key, ffi.buffer(out, n)[:], 28, back) == -1            # short
