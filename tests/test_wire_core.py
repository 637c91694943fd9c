"""pyvde-wirefilter's decision core (cffi_build/wire_core.c), measured: what a user asks
for is what the frames get. Fixed seeds, enough frames for tight bounds."""
import itertools
import math
import statistics

import pytest
from plugs._wire import ffi, lib


class Wire:
    """One direction: its state and the parameters it runs under (Markov node 0)."""

    def __init__(self, seed=1, **params):
        self.d = ffi.new("struct wire_dir *")
        self.p = ffi.new("struct wire_params *")
        lib.wire_init(self.d, seed)
        lib.wire_params_init(self.p)
        for name, value in params.items():
            if isinstance(value, tuple):      # (value, variation, dist)
                f = getattr(self.p, name)
                f.value, f.variation = value[0], value[1]
                f.dist = {"U": lib.WIRE_UNIFORM, "N": lib.WIRE_NORMAL, "P": lib.WIRE_PARETO,
                          "PN": lib.WIRE_PARETONORMAL}[value[2]]
            elif name == "fifo":
                self.d.fifo = value
            elif name in ("loss", "lostburst", "delay", "dup", "band", "speed", "noise",
                          "capacity"):
                getattr(self.p, name).value = value
            else:
                setattr(self.p, name, value)

    def __getattr__(self, name):
        return getattr(self.d, name)


def wire(seed=1, **params):
    return Wire(seed, **params)


def run(w, n, length=100, gap_us=1000, deliver=True):
    v = ffi.new("struct wire_verdict *")
    out = []
    for i in range(n):
        lib.wire_admit(w.d, w.p, length, i * gap_us, v)
        out.append((v.action, [v.at_us[k] for k in range(v.ncopies)],
                    [v.flip_bit[k] for k in range(v.nflips)]))
        if deliver:
            for _ in range(v.ncopies):
                lib.wire_delivered(w.d, length)
    return out


def loss_runs(drops):
    """Lengths of the runs of consecutive losses."""
    runs, cur = [], 0
    for x in drops:
        if x:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return runs


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
    assert sum(drops) / n == pytest.approx(loss / 100, rel=0.05)
    assert statistics.mean(loss_runs(drops)) == pytest.approx(burst, rel=0.05)


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
        lib.wire_admit(d.d, d.p, length, 0, v)
        assert v.action == action
    assert d.c.drop_mtu == 2


def test_capacity_drops_what_does_not_fit_and_frees_on_delivery():
    d = wire(capacity=3000)
    out = run(d, 5, length=1000, deliver=False)
    assert [a for a, _, _ in out] == [lib.WIRE_DELIVER] * 3 + [lib.WIRE_DROP_CAPACITY] * 2
    lib.wire_delivered(d.d, 1000)
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


# ---------------------------------------------------------------- netem's models

@pytest.mark.parametrize("p,r,h1,k1", [(1, 10, 100, 0), (5, 25, 70, 0.1), (2, 50, 100, 1)])
def test_gilbert_elliott_loss_rate_and_burst(p, r, h1, k1):
    n = 400_000
    w = wire(seed=11, loss_model=lib.WIRE_LOSS_GE, ge_p=p, ge_r=r, ge_1h=h1, ge_1k=k1)
    drops = [a == lib.WIRE_DROP_LOSS for a, _, _ in run(w, n)]
    p, r, h1, k1 = p / 100, r / 100, h1 / 100, k1 / 100
    rate = (r * k1 + p * h1) / (p + r)          # stationary P(bad) = p / (p + r)
    assert sum(drops) / n == pytest.approx(rate, rel=0.05)
    if h1 == 1 and k1 == 0:                     # losses are exactly the bad periods
        assert statistics.mean(loss_runs(drops)) == pytest.approx(1 / r, rel=0.05)


def four_state_stationary(p13, p31, p32, p23, p14):
    """netem's 4-state chain; returns the loss rate (time in states 3 and 4)."""
    t = {1: {4: p14, 3: p13, 1: 1 - p13 - p14}, 2: {3: p23, 2: 1 - p23},
         3: {2: p32, 1: p31, 3: 1 - p31 - p32}, 4: {1: 1.0}}
    pi = {1: 1.0, 2: 0.0, 3: 0.0, 4: 0.0}
    for _ in range(20_000):
        nxt = dict.fromkeys(pi, 0.0)
        for a, row in t.items():
            for b, q in row.items():
                nxt[b] += pi[a] * q
        pi = nxt
    return pi[3] + pi[4]


@pytest.mark.parametrize("probs", [(5, 50, 10, 30, 1), (2, 98, 0, 100, 0), (10, 40, 20, 50, 5)])
def test_four_state_loss_rate(probs):
    n = 400_000
    w = wire(seed=12, loss_model=lib.WIRE_LOSS_4STATE,
             **dict(zip(("p13", "p31", "p32", "p23", "p14"), probs)))
    drops = sum(a == lib.WIRE_DROP_LOSS for a, _, _ in run(w, n))
    expected = four_state_stationary(*(x / 100 for x in probs))
    lo, hi = binomial_999(n, expected)
    # a Markov chain's count varies more than a binomial's: allow 2x the interval
    assert n * expected - 2 * (n * expected - lo) <= drops <= n * expected + 2 * (hi - n * expected)


def pareto_cdf(mu, sigma):
    def cdf(x):
        y = 1.5 + (x - mu) * 0.8660254037844386 / sigma
        return 0.0 if y < 1 else 1 - y ** -3
    return cdf


def delays_of(out, gap_us):
    return [(ats[0] - i * gap_us) / 1000 for i, (_, ats, _) in enumerate(out)]


def test_pareto_delay_mean_sd_and_shape():
    n = 40_000
    out = run(wire(seed=13, delay=(100, 60, "P"), fifo=0), n, gap_us=10)
    delays = delays_of(out, 10)
    assert statistics.mean(delays) == pytest.approx(100, abs=0.5)
    assert statistics.pstdev(delays) == pytest.approx(20, rel=0.08)   # heavy tail: sd is noisy
    assert ks_statistic(delays, pareto_cdf(100, 20)) < 1.95 / math.sqrt(n)   # KS 0.1%


def two_sample_ks(a, b):
    a, b = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            i += 1
        else:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    return d


def test_paretonormal_delay_mean_sd_and_shape():
    import random
    n = 40_000
    out = run(wire(seed=14, delay=(100, 60, "PN"), fifo=0), n, gap_us=10)
    delays = delays_of(out, 10)
    assert statistics.mean(delays) == pytest.approx(100, abs=0.5)
    assert statistics.pstdev(delays) == pytest.approx(20, rel=0.05)
    rnd = random.Random(5)     # the definition, independently: 0.75 N + 0.25 Pareto(3)
    ref = [100 + 20 * (0.75 * rnd.gauss(0, 1)
                       + 0.25 * ((1 - rnd.random()) ** (-1 / 3) - 1.5) / 0.8660254037844386)
           / math.sqrt(0.625) for _ in range(n)]
    assert two_sample_ks(delays, ref) < 1.95 * math.sqrt(2 / n)


def lag1(xs):
    m = statistics.mean(xs)
    num = sum((a - m) * (b - m) for a, b in itertools.pairwise(xs))
    return num / sum((a - m) ** 2 for a in xs)


def test_delay_correlation_keeps_the_distribution():
    n = 20_000
    normal = delays_of(run(wire(seed=15, delay=(100, 30, "N"), delay_corr=80, fifo=0), n,
                           gap_us=10), 10)
    assert lag1(normal) == pytest.approx(0.8, abs=0.03)
    assert statistics.mean(normal) == pytest.approx(100, abs=0.5)
    assert statistics.pstdev(normal) == pytest.approx(10, rel=0.05)
    uniform = delays_of(run(wire(seed=16, delay=(100, 20, "U"), delay_corr=80, fifo=0), n,
                            gap_us=10), 10)
    assert lag1(uniform) > 0.7
    assert ks_statistic(uniform, lambda x: min(1, max(0, (x - 80) / 40))) < 4 / math.sqrt(n)
    free = delays_of(run(wire(seed=16, delay=(100, 20, "U"), fifo=0), n, gap_us=10), 10)
    assert abs(lag1(free)) < 0.03


@pytest.mark.parametrize("pct,gap", [(25, 1), (25, 5), (50, 3)])
def test_reorder_fraction_and_gap(pct, gap):
    n = 100_000
    out = run(wire(seed=17, delay=10, reorder=pct, reorder_gap=gap), n, gap_us=1000)
    now = [ats[0] == i * 1000 for i, (_, ats, _) in enumerate(out)]
    p = pct / 100
    expected = 1 / ((gap - 1) + 1 / p)          # a gap of gap-1 frames, then tries with p
    assert sum(now) / n == pytest.approx(expected, rel=0.03)
    if gap > 1:
        runs = [b - a for a, b in zip([i for i, x in enumerate(now) if x],
                                       [i for i, x in enumerate(now) if x][1:])]
        assert min(runs) >= gap
    # the frames sent at once overtake the ones still delayed
    times = [ats[0] for _, ats, _ in out]
    assert sum(b < a for a, b in itertools.pairwise(times)) > 0


def test_duplicate_fraction_with_correlation_clusters():
    n = 100_000
    out = run(wire(seed=18, dup=10, dup_corr=75), n)
    dup = [len(ats) > 1 for _, ats, _ in out]
    extra = sum(len(ats) - 1 for _, ats, _ in out)
    assert extra / n == pytest.approx(0.1 / 0.9, rel=0.1)
    after_dup = [b for a, b in itertools.pairwise(dup) if a]
    assert sum(after_dup) / len(after_dup) > 0.3      # independent: 0.1


def test_corrupt_flips_one_bit_in_the_fraction_asked():
    n, length = 100_000, 200
    out = run(wire(seed=19, corrupt=2), n, length=length)
    damaged = [f for _, _, f in out if f]
    lo, hi = binomial_999(n, 0.02)
    assert lo <= len(damaged) <= hi
    assert all(len(f) == 1 and 0 <= f[0] < length * 8 for f in damaged)
    w = wire(seed=19, corrupt=2, discard_corrupt=1)
    out = run(w, n, length=length)
    assert sum(a == lib.WIRE_DROP_CORRUPT for a, _, _ in out) == len(damaged)
    assert w.c.drop_corrupt == len(damaged) and w.c.corrupted == len(damaged)


@pytest.mark.parametrize("length,overhead,cell,cell_overhead,on_wire", [
    (1000, 0, 0, 0, 1000), (1000, 24, 0, 0, 1024), (100, 0, 48, 5, 3 * 53), (64, -4, 0, 0, 60)])
def test_rate_counts_overhead_and_cells(length, overhead, cell, cell_overhead, on_wire):
    rate, n = 1_000_000, 2000                   # bytes/s; all frames arrive at once
    w = wire(rate=rate, rate_overhead=overhead, rate_cell=cell, rate_cell_overhead=cell_overhead)
    out = run(w, n, length=length, gap_us=0)
    last = out[-1][1][0]
    assert last == pytest.approx(n * on_wire * 1e6 / rate, rel=0.001)


def test_rate_after_delay_as_netem():
    w = wire(rate=1_000_000, delay=10)
    out = run(w, 3, length=1000, gap_us=0)
    # 10 ms delay, then one frame per 1 ms behind each other
    assert [ats[0] for _, ats, _ in out] == [11_000, 12_000, 13_000]


def test_slots_release_frames_in_bursts():
    w = wire(slot_min_us=10_000, slot_max_us=10_000, slot_packets=5)
    out = run(w, 50, length=100, gap_us=0)
    times = [ats[0] for _, ats, _ in out]
    assert times == [10_000 * (1 + i // 5) for i in range(50)]
    w = wire(seed=3, slot_min_us=5_000, slot_max_us=15_000, slot_bytes=1000)
    times = [ats[0] for _, ats, _ in run(w, 1000, length=250, gap_us=0)]
    bursts = [len(list(g)) for _, g in itertools.groupby(times)]
    assert set(bursts) == {4}
    gaps = [b - a for a, b in zip(sorted(set(times)), sorted(set(times))[1:])]
    assert min(gaps) >= 5_000 and max(gaps) <= 15_000
    assert statistics.mean(gaps) == pytest.approx(10_000, rel=0.05)


def test_speed_keeps_the_input_busy_and_delays_delivery():
    w = wire(speed=1_000_000)                   # bytes/s: 1000 bytes take 1 ms
    out = run(w, 10, length=1000, gap_us=0)
    assert w.d.speed_free_us == 10_000
    assert [ats[0] for _, ats, _ in out][:2] == [1000, 1000]    # its own transmission time


# ---------------------------------------------------------------- the Markov model

def markov(seed=1, nodes=2, time_ms=1.0):
    m = ffi.new("struct wire_markov *")
    lib.wire_markov_init(m, seed)
    assert lib.wire_markov_resize(m, nodes) == 0
    m.time_ms = time_ms
    return m


def test_markov_state_occupancy():
    m = markov(nodes=3)
    assert lib.wire_markov_setedge(m, 0, 1, 10) == 0
    assert lib.wire_markov_setedge(m, 1, 0, 20) == 0
    assert lib.wire_markov_setedge(m, 1, 2, 10) == 0
    assert lib.wire_markov_setedge(m, 2, 0, 50) == 0
    assert [m.weight[1][j] for j in range(3)] == [20, 70, 10]    # self loop: the rest
    lib.wire_markov_start(m, 0)
    n = 200_000
    counts = [0, 0, 0]
    for step in range(1, n + 1):
        counts[lib.wire_markov_advance(m, step * 1000)] += 1
    # stationary: pi1 = 0.1 pi0 + 0.7 pi1, pi2 = 0.1 pi1 + 0.5 pi2: pi0 = 3 pi1, pi2 = 0.2 pi1
    pi1 = 1 / (3 + 1 + 0.2)
    expected = [3 * pi1, pi1, 0.2 * pi1]
    for c, e in zip(counts, expected):
        assert c / n == pytest.approx(e, rel=0.05)


def test_markov_edges_are_checked_and_survive_resizing():
    m = markov(nodes=3)
    assert lib.wire_markov_setedge(m, 0, 1, 60) == 0
    assert lib.wire_markov_setedge(m, 0, 2, 50) == -1      # 110% out of node 0
    assert lib.wire_markov_setedge(m, 0, 3, 10) == -1      # no node 3
    assert lib.wire_markov_setedge(m, 0, 2, -1) == -1
    assert lib.wire_markov_setedge(m, 1, 2, 30) == 0
    assert lib.wire_markov_resize(m, 2) == 0
    assert (m.weight[0][1], m.weight[0][0], m.weight[1][1]) == (60, 40, 100)
    assert lib.wire_markov_resize(m, 3) == 0
    assert m.weight[1][2] == 0 and m.weight[1][1] == 100   # the removed edge does not return
    assert lib.wire_markov_resize(m, 0) == -1 and lib.wire_markov_resize(m, 65) == -1


def test_markov_steps_every_period_and_one_node_never_moves():
    m = markov(nodes=2, time_ms=100)
    lib.wire_markov_setedge(m, 0, 1, 100)
    lib.wire_markov_setedge(m, 1, 0, 100)
    lib.wire_markov_start(m, 0)                 # the first step is taken at start
    assert m.current == 1
    assert lib.wire_markov_advance(m, 99_999) == 1
    assert lib.wire_markov_advance(m, 100_000) == 0
    assert lib.wire_markov_advance(m, 350_000) == 0          # two more steps: 1, 0
    assert lib.wire_markov_advance(m, 400_000) == 1
    one = markov(nodes=1)
    lib.wire_markov_start(one, 0)
    assert lib.wire_markov_advance(one, 10**9) == 0
