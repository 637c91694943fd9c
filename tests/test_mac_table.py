"""The C MAC table (cffi_build/mac_table.c) against a Python model, with time injected."""
import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from switchd._dataplane import ffi, lib

MACS = [bytes([0x02, 0, 0, 0, i // 4, i % 4]) for i in range(6)]
CAPACITY = 8


class MacTableModel(RuleBasedStateMachine):
    """Learning, lookups, aging, minimum persistence, flushing and a full table."""

    def __init__(self):
        super().__init__()
        self.t = ffi.gc(lib.mt_new(4, CAPACITY), lib.mt_free)
        self.expire, self.minpers = 10_000, 3_000
        lib.mt_set_times(self.t, self.expire, self.minpers)
        self.now = 0
        self.model: dict[tuple[bytes, int], list[int]] = {}   # key -> [port, last_seen]

    def _expired(self, key) -> bool:
        return self.now - self.model[key][1] >= self.expire

    def _sweep(self) -> int:
        dead = [k for k in self.model if self._expired(k)]
        for k in dead:
            del self.model[k]
        return len(dead)

    # steps that land exactly on the persistence and expiry boundaries, and around them
    @rule(dt=st.sampled_from([0, 1, 1000, 2999, 3000, 3001, 5000, 9999, 10_000, 10_001]))
    def advance(self, dt):
        self.now += dt

    @rule(mac=st.sampled_from(MACS), vlan=st.sampled_from([0, 5]), port=st.integers(1, 3))
    def learn(self, mac, vlan, port):
        key = (mac, vlan)
        if key in self.model and self._expired(key):
            del self.model[key]
        if key in self.model:
            entry = self.model[key]
            if entry[0] == port:
                entry[1] = self.now
                expected = lib.MT_REFRESHED
            elif self.now - entry[1] < self.minpers:
                expected = lib.MT_KEPT
            else:
                entry[:] = [port, self.now]
                expected = lib.MT_MOVED
        elif len(self.model) >= CAPACITY and self._sweep() == 0:
            expected = lib.MT_FULL
        else:
            self.model[key] = [port, self.now]
            expected = lib.MT_NEW
        assert lib.mt_learn(self.t, mac, vlan, port, self.now) == expected

    @rule(mac=st.sampled_from(MACS), vlan=st.sampled_from([0, 5]))
    def lookup(self, mac, vlan):
        key = (mac, vlan)
        if key in self.model and self._expired(key):
            del self.model[key]
        expected = self.model[key][0] if key in self.model else -1
        assert lib.mt_lookup(self.t, mac, vlan, self.now) == expected

    @rule()
    def expire_sweep(self):
        assert lib.mt_expire(self.t, self.now) == self._sweep()

    @rule(port=st.integers(1, 4))
    def flush_port(self, port):
        gone = [k for k, v in self.model.items() if v[0] == port]
        for k in gone:
            del self.model[k]
        assert lib.mt_flush_port(self.t, port) == len(gone)

    @precondition(lambda self: self.model)
    @rule(vlan=st.sampled_from([0, 5]))
    def flush_vlan(self, vlan):
        gone = [k for k in self.model if k[1] == vlan]
        for k in gone:
            del self.model[k]
        assert lib.mt_flush_vlan(self.t, vlan) == len(gone)

    @invariant()
    def dump_matches_model(self):
        out = ffi.new("struct mt_entry[]", CAPACITY + 1)
        n = lib.mt_dump(self.t, out, CAPACITY + 1, self.now)
        got = {(bytes(ffi.buffer(out[i].mac, 6)), out[i].vlan): (out[i].port, out[i].age_ms)
               for i in range(n)}
        live = {k: (v[0], self.now - v[1]) for k, v in self.model.items() if not self._expired(k)}
        assert got == live
        assert lib.mt_count(self.t) >= len(live)     # expired entries may linger until swept


MacTableModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60,
                                           deadline=None)
TestMacTable = MacTableModel.TestCase


def test_resize_empties_and_keeps_working():
    t = ffi.gc(lib.mt_new(128, 4096), lib.mt_free)
    assert lib.mt_learn(t, MACS[0], 0, 1, 0) == lib.MT_NEW
    assert lib.mt_resize(t, 1000) == 0
    assert lib.mt_buckets(t) == 1024 and lib.mt_count(t) == 0
    assert lib.mt_lookup(t, MACS[0], 0, 0) == -1
    assert lib.mt_learn(t, MACS[0], 0, 2, 0) == lib.MT_NEW
    assert lib.mt_lookup(t, MACS[0], 0, 0) == 2
