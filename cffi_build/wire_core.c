/*
 * wire_core.c — per-frame decisions of pyvde-wirefilter; see wire_core.h.
 *
 * Order of decisions for one frame, as wirefilter: MTU, loss (Bernoulli, or Gilbert when
 * a mean burst is set), capacity, duplication, then for each copy the bandwidth queue,
 * the delay and the bit errors (noise). Everything random comes from the direction's
 * own xoshiro256** generator, so one seed gives one drop/delay pattern.
 */
#include "wire_core.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ randomness */

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void wire_seed(struct wire_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t next(struct wire_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double wire_uniform(struct wire_rng *r)
{
    return (next(r) >> 11) * 0x1.0p-53;
}

double wire_normal(struct wire_rng *r)
{
    double u1 = wire_uniform(r), u2 = wire_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double wire_draw(struct wire_rng *r, const struct wire_param *p)
{
    double x = p->value;
    if (p->variation > 0) {
        if (p->dist == WIRE_NORMAL)
            x += wire_normal(r) * p->variation / 3.0;
        else
            x += (2.0 * wire_uniform(r) - 1.0) * p->variation;
    }
    return x < 0 ? 0 : x;
}

/* ------------------------------------------------------------ decisions */

void wire_init(struct wire_dir *d, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->fifo = 1;
    wire_seed(&d->rng, seed);
}

static int lost(struct wire_dir *d)
{
    double loss = wire_draw(&d->rng, &d->loss) / 100.0;
    if (loss <= 0)
        return 0;
    if (loss >= 1)
        return 1;
    double burst = wire_draw(&d->rng, &d->lostburst);
    if (burst <= 0)
        return wire_uniform(&d->rng) < loss;
    /* Gilbert: P(good -> bad) = loss / (burst (1 - loss)), P(bad -> good) = 1 / burst,
     * so bursts last `burst` frames on average and the loss rate is `loss`. */
    if (d->gilbert_bad) {
        if (wire_uniform(&d->rng) < 1.0 / burst)
            d->gilbert_bad = 0;
    } else if (wire_uniform(&d->rng) < loss / (burst * (1.0 - loss))) {
        d->gilbert_bad = 1;
    }
    return d->gilbert_bad;
}

void wire_admit(struct wire_dir *d, uint32_t len, int64_t now_us, struct wire_verdict *v)
{
    v->action = WIRE_DELIVER;
    v->ncopies = 0;
    v->nflips = 0;
    d->c.in++;
    if (d->mtu && len > d->mtu) {
        v->action = WIRE_DROP_MTU;
        d->c.drop_mtu++;
        return;
    }
    if (lost(d)) {
        v->action = WIRE_DROP_LOSS;
        d->c.drop_loss++;
        return;
    }
    int copies = 1;
    double dup = wire_draw(&d->rng, &d->dup) / 100.0;
    while (copies < WIRE_MAX_COPIES && dup > 0 && wire_uniform(&d->rng) < dup)
        copies++;
    if (d->capacity && d->queued_bytes + (uint64_t)len * copies > d->capacity) {
        v->action = WIRE_DROP_CAPACITY;
        d->c.drop_capacity++;
        return;
    }
    for (int i = 0; i < copies; i++) {
        int64_t t = now_us;
        double band = wire_draw(&d->rng, &d->band);
        if (band > 0) {   /* the channel sends one frame after the other at `band` bytes/s */
            int64_t start = d->band_free_us > now_us ? d->band_free_us : now_us;
            d->band_free_us = start + (int64_t)llround(len * 1e6 / band);
            t = d->band_free_us;
        }
        t += (int64_t)llround(wire_draw(&d->rng, &d->delay) * 1000.0);
        if (d->fifo && t < d->last_delivery_us)
            t = d->last_delivery_us;
        if (t > d->last_delivery_us)
            d->last_delivery_us = t;
        v->at_us[v->ncopies++] = t;
    }
    d->queued_bytes += (uint64_t)len * copies;
    d->c.dup_copies += copies - 1;
    double noise = wire_draw(&d->rng, &d->noise);
    if (noise > 0) {   /* expected flips: noise per 2^20 bytes, so len * noise / 2^20 */
        double expect = len * noise / 1048576.0;
        int n = (int)expect;
        if (wire_uniform(&d->rng) < expect - n)
            n++;
        for (int i = 0; i < n && v->nflips < WIRE_MAX_FLIPS; i++)
            v->flip_bit[v->nflips++] = (uint32_t)(wire_uniform(&d->rng) * len * 8);
        d->c.flipped_bits += v->nflips;
    }
}

void wire_delivered(struct wire_dir *d, uint32_t len)
{
    d->queued_bytes = d->queued_bytes > len ? d->queued_bytes - len : 0;
    d->c.delivered++;
}
