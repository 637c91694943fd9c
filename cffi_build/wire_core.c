/*
 * wire_core.c — per-frame decisions of pyvde-wirefilter and its Markov model; see wire_core.h.
 *
 * Order of decisions for one frame, as wirefilter, with netem's models in their places:
 * interface speed, MTU, loss (Bernoulli, Gilbert, Gilbert-Elliott or 4-state),
 * duplication, capacity, damage (noise, corrupt; dropped if discard_corrupt), reorder,
 * then for each copy the bandwidth queue, the delay, netem's rate, FIFO order and netem's
 * slots. Everything random comes from the direction's own xoshiro256** generator, so one
 * seed gives one drop/delay pattern.
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

/* Phi: the standard normal CDF, maps a correlated normal back to a uniform (a Gaussian
 * copula: the marginal distribution stays what the user asked for, and consecutive
 * draws are correlated; netem's own correlation narrows the distribution instead). */
static double phi(double z)
{
    return 0.5 * erfc(-z / M_SQRT2);
}

static double correlated_normal(struct wire_rng *r, double corr, double *z)
{
    double rho = corr / 100.0;
    if (rho <= 0 || !z)
        return wire_normal(r);
    if (rho > 0.999999)
        rho = 0.999999;
    *z = rho * *z + sqrt(1.0 - rho * rho) * wire_normal(r);
    return *z;
}

double wire_uniform_corr(struct wire_rng *r, double corr, double *z)
{
    if (corr <= 0 || !z)
        return wire_uniform(r);
    double u = phi(correlated_normal(r, corr, z));
    return u >= 1.0 ? 0x1.fffffffffffffp-1 : u;
}

/* Pareto with shape 3 and scale 1 (mean 1.5, sigma sqrt(3)/2), standardised. */
static double pareto_std(double u)
{
    return (pow(1.0 - u, -1.0 / 3.0) - 1.5) / 0.86602540378443865;
}

static double clamp0(double x) { return x < 0 ? 0 : x; }

double wire_draw_corr(struct wire_rng *r, const struct wire_param *p, double corr, double *z)
{
    if (p->variation <= 0)
        return clamp0(p->value);
    double sigma = p->variation / 3.0;
    switch (p->dist) {
    case WIRE_NORMAL:
        return clamp0(p->value + correlated_normal(r, corr, z) * sigma);
    case WIRE_PARETO:
        return clamp0(p->value + pareto_std(wire_uniform_corr(r, corr, z)) * sigma);
    case WIRE_PARETONORMAL: {
        double s = 0.75 * correlated_normal(r, corr, z) + 0.25 * pareto_std(wire_uniform(r));
        return clamp0(p->value + s / 0.79056941504209483 * sigma);   /* sqrt(0.625) */
    }
    default:
        return clamp0(p->value + (2.0 * wire_uniform_corr(r, corr, z) - 1.0) * p->variation);
    }
}

double wire_draw(struct wire_rng *r, const struct wire_param *p)
{
    return wire_draw_corr(r, p, 0, NULL);
}

/* ------------------------------------------------------------ decisions */

void wire_params_init(struct wire_params *p)
{
    memset(p, 0, sizeof *p);
    p->reorder_gap = 1;
}

void wire_init(struct wire_dir *d, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->fifo = 1;
    wire_seed(&d->rng, seed);
    d->z_loss = wire_normal(&d->rng);
    d->z_delay = wire_normal(&d->rng);
    d->z_dup = wire_normal(&d->rng);
    d->z_reorder = wire_normal(&d->rng);
    d->z_corrupt = wire_normal(&d->rng);
    d->slot_next_us = INT64_MIN;        /* the first frame waits for a slot to open */
}

static int chance(struct wire_dir *d, double percent)
{
    return wire_uniform(&d->rng) * 100.0 < percent;
}

static int lost(struct wire_dir *d, const struct wire_params *p)
{
    if (p->loss_model == WIRE_LOSS_GE) {        /* netem's Gilbert-Elliott */
        int bad = d->loss_state == 1;
        if (chance(d, bad ? p->ge_r : p->ge_p))
            d->loss_state = !bad;
        return chance(d, bad ? p->ge_1h : p->ge_1k);
    }
    if (p->loss_model == WIRE_LOSS_4STATE) {    /* netem's 4-state Markov (GI model) */
        double u = wire_uniform(&d->rng) * 100.0;
        switch (d->loss_state) {
        case 2:             /* received, in a burst */
            if (u < p->p23) {
                d->loss_state = 3;
                return 1;
            }
            return 0;
        case 3:             /* lost, in a burst */
            if (u < p->p32) {
                d->loss_state = 2;
                return 0;
            }
            if (u < p->p32 + p->p31) {
                d->loss_state = 1;
                return 0;
            }
            return 1;
        case 4:             /* isolated loss */
            d->loss_state = 1;
            return 0;
        default:            /* 1: received, in a gap */
            if (u < p->p14) {
                d->loss_state = 4;
                return 1;
            }
            if (u < p->p14 + p->p13) {
                d->loss_state = 3;
                return 1;
            }
            d->loss_state = 1;
            return 0;
        }
    }
    double loss = wire_draw(&d->rng, &p->loss) / 100.0;
    if (loss <= 0)
        return 0;
    if (loss >= 1)
        return 1;
    double burst = wire_draw(&d->rng, &p->lostburst);
    if (burst <= 0)
        return wire_uniform_corr(&d->rng, p->loss_corr, &d->z_loss) < loss;
    /* Gilbert: P(good -> bad) = loss / (burst (1 - loss)), P(bad -> good) = 1 / burst,
     * so bursts last `burst` frames on average and the loss rate is `loss`. */
    if (d->loss_state) {
        if (wire_uniform(&d->rng) < 1.0 / burst)
            d->loss_state = 0;
    } else if (wire_uniform(&d->rng) < loss / (burst * (1.0 - loss))) {
        d->loss_state = 1;
    }
    return d->loss_state;
}

/* Bytes a frame takes on a netem rate-limited wire. */
static double rate_bytes(const struct wire_params *p, uint32_t len)
{
    double bytes = (double)len + p->rate_overhead;
    if (p->rate_cell) {
        double cells = ceil(bytes / p->rate_cell);
        bytes = cells * ((double)p->rate_cell + p->rate_cell_overhead);
    }
    return bytes < 0 ? 0 : bytes;
}

static void new_slot(struct wire_dir *d, const struct wire_params *p, int64_t now)
{
    double gap = p->slot_min_us;
    if (p->slot_max_us > p->slot_min_us)
        gap += wire_uniform(&d->rng) * (p->slot_max_us - p->slot_min_us);
    d->slot_next_us = now + (int64_t)llround(gap);
    d->slot_packets_left = p->slot_packets ? (int64_t)p->slot_packets : INT64_MAX;
    d->slot_bytes_left = p->slot_bytes ? (int64_t)p->slot_bytes : INT64_MAX;
}

static void drop(struct wire_verdict *v, int action, uint64_t *counter)
{
    v->action = action;
    v->ncopies = 0;
    v->nflips = 0;
    (*counter)++;
}

void wire_admit(struct wire_dir *d, const struct wire_params *p, uint32_t len, int64_t now_us,
                struct wire_verdict *v)
{
    v->action = WIRE_DELIVER;
    v->ncopies = 0;
    v->nflips = 0;
    d->c.in++;
    /* the input interface is busy receiving every frame that arrives, whatever its fate */
    int64_t speed_us = 0;
    double speed = wire_draw(&d->rng, &p->speed);
    if (speed > 0) {
        speed_us = (int64_t)llround(len * 1e6 / speed);
        d->speed_free_us = (d->speed_free_us > now_us ? d->speed_free_us : now_us) + speed_us;
    }
    if (p->mtu && len > p->mtu)
        return drop(v, WIRE_DROP_MTU, &d->c.drop_mtu);
    if (lost(d, p))
        return drop(v, WIRE_DROP_LOSS, &d->c.drop_loss);
    /* the first duplication is correlated with the previous frame's (netem), the copy's
     * own copies are not */
    int copies = 1;
    double dup = wire_draw(&d->rng, &p->dup);
    if (dup > 0 && wire_uniform_corr(&d->rng, p->dup_corr, &d->z_dup) * 100.0 < dup) {
        copies++;
        while (copies < WIRE_MAX_COPIES && wire_uniform(&d->rng) * 100.0 < dup)
            copies++;
    }
    double cap = wire_draw(&d->rng, &p->capacity);
    if (cap > 0 && (double)d->queued_bytes + (double)len * copies > cap)
        return drop(v, WIRE_DROP_CAPACITY, &d->c.drop_capacity);
    /* damage: noise (bits per MiB) and netem's corrupt (one bit in a fraction of frames) */
    double noise = wire_draw(&d->rng, &p->noise);
    if (noise > 0) {
        double expect = len * noise / 1048576.0;
        int n = (int)expect;
        if (wire_uniform(&d->rng) < expect - n)
            n++;
        for (int i = 0; i < n && v->nflips < WIRE_MAX_FLIPS; i++)
            v->flip_bit[v->nflips++] = (uint32_t)(wire_uniform(&d->rng) * len * 8);
    }
    if (p->corrupt > 0 && wire_uniform_corr(&d->rng, p->corrupt_corr, &d->z_corrupt) * 100.0
                              < p->corrupt) {
        d->c.corrupted++;
        if (v->nflips < WIRE_MAX_FLIPS)
            v->flip_bit[v->nflips++] = (uint32_t)(wire_uniform(&d->rng) * len * 8);
    }
    d->c.flipped_bits += v->nflips;
    if (v->nflips && p->discard_corrupt)
        return drop(v, WIRE_DROP_CORRUPT, &d->c.drop_corrupt);
    /* netem reorder: one frame in reorder percent (at most one per gap) goes at once */
    int jump = 0;
    if (p->reorder > 0) {
        uint32_t gap = p->reorder_gap ? p->reorder_gap : 1;
        if (d->reorder_count + 1 >= gap
            && wire_uniform_corr(&d->rng, p->reorder_corr, &d->z_reorder) * 100.0 < p->reorder) {
            jump = 1;
            d->reorder_count = 0;
            d->c.reordered++;
        } else {
            d->reorder_count++;
        }
    }
    for (int i = 0; i < copies; i++) {
        int64_t t = now_us;
        if (i == 0 && jump) {
            v->at_us[v->ncopies++] = t;
            continue;
        }
        double band = wire_draw(&d->rng, &p->band);
        if (band > 0) {   /* the channel sends one frame after the other at `band` bytes/s */
            int64_t start = d->band_free_us > now_us ? d->band_free_us : now_us;
            d->band_free_us = start + (int64_t)llround(len * 1e6 / band);
            t = d->band_free_us;
        } else {
            t += speed_us;      /* wirefilter: the transmission time at the interface speed */
        }
        t += (int64_t)llround(wire_draw_corr(&d->rng, &p->delay, p->delay_corr, &d->z_delay)
                              * 1000.0);
        if (p->rate > 0) {      /* netem: behind the last frame, then its own wire time */
            int64_t start = d->rate_last_us > t ? d->rate_last_us : t;
            d->rate_last_us = start + (int64_t)llround(rate_bytes(p, len) * 1e6 / p->rate);
            t = d->rate_last_us;
        }
        if (d->fifo && t < d->last_delivery_us)
            t = d->last_delivery_us;
        if (p->slot_min_us > 0 || p->slot_max_us > 0) {   /* netem slot: leave in bursts */
            if (d->slot_next_us < t)
                new_slot(d, p, t);
            t = d->slot_next_us;
            d->slot_packets_left--;
            d->slot_bytes_left -= len;
            if (d->slot_packets_left <= 0 || d->slot_bytes_left <= 0)
                new_slot(d, p, t);
        }
        if (t > d->last_delivery_us)
            d->last_delivery_us = t;
        v->at_us[v->ncopies++] = t;
    }
    d->queued_bytes += (uint64_t)len * copies;
    d->c.dup_copies += copies - 1;
}

void wire_delivered(struct wire_dir *d, uint32_t len)
{
    d->queued_bytes = d->queued_bytes > len ? d->queued_bytes - len : 0;
    d->c.delivered++;
}

/* ------------------------------------------------------------ the Markov model */

void wire_markov_init(struct wire_markov *m, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->numnodes = 1;
    m->time_ms = 100.0;
    m->weight[0][0] = 100.0;
    wire_seed(&m->rng, seed);
}

static void self_loop(struct wire_markov *m, int i)
{
    double w = 100.0;
    for (int j = 0; j < m->numnodes; j++)
        if (j != i)
            w -= m->weight[i][j];
    m->weight[i][i] = w;
}

int wire_markov_resize(struct wire_markov *m, int n)
{
    if (n < 1 || n > WIRE_MAX_NODES)
        return -1;
    for (int i = 0; i < WIRE_MAX_NODES; i++)
        for (int j = 0; j < WIRE_MAX_NODES; j++)
            if (i >= n || j >= n)
                m->weight[i][j] = 0;
    m->numnodes = n;
    for (int i = 0; i < n; i++)
        self_loop(m, i);
    if (m->current >= n)
        m->current = 0;
    return 0;
}

int wire_markov_setedge(struct wire_markov *m, int from, int to, double weight)
{
    if (from < 0 || from >= m->numnodes || to < 0 || to >= m->numnodes || !(weight >= 0))
        return -1;
    if (from == to)
        return 0;       /* the self loop is what the other edges leave */
    double others = weight;
    for (int j = 0; j < m->numnodes; j++)
        if (j != from && j != to)
            others += m->weight[from][j];
    if (others > 100.0 + 1e-9)
        return -1;
    m->weight[from][to] = weight;
    self_loop(m, from);
    return 0;
}

static int markov_step(struct wire_markov *m)
{
    int i = m->current, k = i;
    double num = wire_uniform(&m->rng) * 100.0;
    for (int j = 0; j < m->numnodes; j++) {
        k = (i + j) % m->numnodes;
        if (num < m->weight[i][k])
            break;
        num -= m->weight[i][k];
        k = i;
    }
    m->next_us += (int64_t)llround(m->time_ms * 1000.0);
    return m->current = k;
}

void wire_markov_start(struct wire_markov *m, int64_t now_us)
{
    m->next_us = now_us;
    if (m->numnodes > 1)
        markov_step(m);
}

int wire_markov_advance(struct wire_markov *m, int64_t now_us)
{
    if (m->numnodes > 1)
        while (m->next_us <= now_us)
            markov_step(m);
    return m->current;
}
