"""pyvde-wirefilter's decision core (cffi_build/wire_core.c), measured: what a user asks
for is what the frames get. Fixed seeds, enough frames for tight bounds."""
import itertools
import math
import statistics

import pytest
from plugs._wire import ffi, lib


def wire(seed=1, **params):
    d = ffi.new("struct wire_dir *")
    lib.wire_init(d, seed)
    for name, value in params.items():
        if isinstance(value, tuple):      # (value, variation, dist)
            p = getattr(d, name)
            p.value, p.variation = value[0], value[1]
            p.dist = lib.WIRE_NORMAL if value[2] == "N" else lib.WIRE_UNIFORM
        elif name in ("mtu", "capacity", "fifo"):
            setattr(d, name, value)
        else:
            getattr(d, name).value = value
    return d


def run(d, n, length=100, gap_us=1000, deliver=True):
    v = ffi.new("struct wire_verdict *")
    out = []
    for i in range(n):
        lib.wire_admit(d, length, i * gap_us, v)
        out.append((v.action, [v.at_us[k] for k in range(v.ncopies)],
                    [v.flip_bit[k] for k in range(v.nflips)]))
        if deliver:
            for _ in range(v.ncopies):
                lib.wire_delivered(d, length)
    return out


def binomial_999(n, p):
    """The 99.9% interval of a Binomial(n, p) count (normal approximation)."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 3.3 * sd, n * p + 3.3 * sd


@pytest.mark.parametrize("loss", [1, 5, 20, 50])
def test_loss_rate_within_the_binomial_interval(loss):
    n = 200_000
    out = run(wire(seed=loss, loss=loss), n)
    dropped = sum(a == lib.WIRE_DROP_LOSS for a, _, _ in out)
    lo, hi = binomial_999(n, loss / 100)
    assert lo <= dropped <= hi


@pytest.mark.parametrize("loss,burst", [(5, 3), (10, 5), (20, 2)])
def test_gilbert_mean_burst_and_loss_rate(loss, burst):
    n = 400_000
    out = run(wire(seed=7, loss=loss, lostburst=burst), n)
    drops = [a == lib.WIRE_DROP_LOSS for a, _, _ in out]
    bursts, cur = [], 0
    for x in drops:
        if x:
            cur += 1
        elif cur:
            bursts.append(cur)
            cur = 0
    assert sum(drops) / n == pytest.approx(loss / 100, rel=0.05)
    assert statistics.mean(bursts) == pytest.approx(burst, rel=0.05)


def ks_statistic(sample, cdf):
    xs = sorted(sample)
    n = len(xs)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(xs))


def test_uniform_delay_mean_sd_and_shape():
    n = 20_000
    out = run(wire(seed=3, delay=(100, 20, "U"), fifo=0), n, gap_us=10)
    delays = [(ats[0] - i * 10) / 1000 for i, (_, ats, _) in enumerate(out)]
    assert statistics.mean(delays) == pytest.approx(100, abs=0.3)
    assert statistics.pstdev(delays) == pytest.approx(20 / math.sqrt(3), rel=0.02)
    d = ks_statistic(delays, lambda x: min(1, max(0, (x - 80) / 40)))
    assert d < 1.95 / math.sqrt(n)                  # KS at the 0.1% level


def test_normal_delay_mean_sd_and_shape():
    n = 20_000
    out = run(wire(seed=4, delay=(100, 30, "N"), fifo=0), n, gap_us=10)
    delays = [(ats[0] - i * 10) / 1000 for i, (_, ats, _) in enumerate(out)]
    assert statistics.mean(delays) == pytest.approx(100, abs=0.3)
    assert statistics.pstdev(delays) == pytest.approx(10, rel=0.03)
    d = ks_statistic(delays, lambda x: 0.5 * (1 + math.erf((x - 100) / (10 * math.sqrt(2)))))
    assert d < 1.95 / math.sqrt(n)


def test_fifo_keeps_order_and_nofifo_reorders():
    for fifo in (1, 0):
        out = run(wire(seed=5, delay=(50, 40, "U"), fifo=fifo), 5000, gap_us=100)
        times = [ats[0] for _, ats, _ in out]
        in_order = all(a <= b for a, b in itertools.pairwise(times))
        assert in_order == bool(fifo)


def test_bandwidth_within_two_percent():
    band = 125_000                                     # bytes/s: 1 Mbit/s
    out = run(wire(seed=6, band=band), 5000, length=1000, gap_us=0)
    last = out[-1][1][0]
    assert 5000 * 1000 / (last / 1e6) == pytest.approx(band, rel=0.02)


def test_duplicates_fraction():
    n = 100_000
    out = run(wire(seed=8, dup=10), n)
    extra = sum(len(ats) - 1 for _, ats, _ in out)
    # each copy is duplicated again with p: expected extra copies n * p / (1 - p)
    assert extra / n == pytest.approx(0.1 / 0.9, rel=0.05)


def test_mtu_drops_exactly_the_long_frames():
    d = wire(mtu=1500)
    v = ffi.new("struct wire_verdict *")
    for length, action in [(1500, lib.WIRE_DELIVER), (1501, lib.WIRE_DROP_MTU),
                           (64, lib.WIRE_DELIVER), (9000, lib.WIRE_DROP_MTU)]:
        lib.wire_admit(d, length, 0, v)
        assert v.action == action
    assert d.c.drop_mtu == 2


def test_capacity_drops_what_does_not_fit_and_frees_on_delivery():
    d = wire(capacity=3000)
    out = run(d, 5, length=1000, deliver=False)
    assert [a for a, _, _ in out] == [lib.WIRE_DELIVER] * 3 + [lib.WIRE_DROP_CAPACITY] * 2
    lib.wire_delivered(d, 1000)
    assert run(d, 1, length=1000, deliver=False)[0][0] == lib.WIRE_DELIVER


def test_noise_flips_the_configured_bits_per_megabyte():
    n, length, noise = 20_000, 1500, 1000              # 1000 bits per 2^20 bytes
    out = run(wire(seed=9, noise=noise), n, length=length)
    flips = sum(len(f) for _, _, f in out)
    expected = n * length * noise / 2**20
    assert flips == pytest.approx(expected, rel=0.03)
    assert all(0 <= b < length * 8 for _, _, fl in out for b in fl)


def test_same_seed_same_pattern_other_seed_other_pattern():
    def pattern(seed):
        return [a for a, _, _ in run(wire(seed=seed, loss=10, lostburst=3, delay=(5, 5, "N")),
                                     5000)]
    assert pattern(42) == pattern(42)
    assert pattern(42) != pattern(43)
