/*
 * wire_core.h — pyvde-wirefilter's per-frame decisions, without I/O (issue 5, first part).
 *
 * Pure: the time of arrival is passed in, randomness comes from a seeded generator in
 * the direction's state, and the answer is a verdict (drop and why, or the delivery
 * times of each copy and the bits to flip). The engine that reads, schedules and
 * writes frames is built on top of this; tests drive it directly to measure accuracy.
 */
#ifndef PYVDE_WIRE_CORE_H
#define PYVDE_WIRE_CORE_H

#include <stdint.h>

#define WIRE_UNIFORM 0
#define WIRE_NORMAL 1       /* sigma = variation / 3, as wirefilter ("98% inside") */

#define WIRE_DELIVER 0
#define WIRE_DROP_MTU 1
#define WIRE_DROP_LOSS 2
#define WIRE_DROP_CAPACITY 3

#define WIRE_MAX_COPIES 8
#define WIRE_MAX_FLIPS 16

struct wire_rng {
    uint64_t s[4];          /* xoshiro256** */
};

/* A value drawn per frame: value +- variation, uniform or normal. */
struct wire_param {
    double value, variation;
    int32_t dist;           /* WIRE_UNIFORM or WIRE_NORMAL */
};

struct wire_counters {
    uint64_t in, delivered, dup_copies;
    uint64_t drop_mtu, drop_loss, drop_capacity;
    uint64_t flipped_bits;
};

struct wire_dir {
    /* parameters (wirefilter's options, per direction) */
    struct wire_param loss;         /* percent */
    struct wire_param lostburst;    /* mean loss burst, frames; > 0: Gilbert model */
    struct wire_param delay;        /* milliseconds */
    struct wire_param dup;          /* percent */
    struct wire_param band;         /* channel bandwidth, bytes/s; 0: unlimited */
    struct wire_param noise;        /* damaged bits per 2^20 bytes */
    uint32_t mtu;                   /* frames longer are dropped; 0: no limit */
    uint64_t capacity;              /* bytes waiting in the channel; 0: no limit */
    int32_t fifo;                   /* 1: copies leave in arrival order */
    /* state */
    int32_t gilbert_bad;
    int64_t band_free_us;           /* when the channel has sent what it holds */
    int64_t last_delivery_us;
    uint64_t queued_bytes;          /* admitted, not yet delivered (wire_delivered lowers it) */
    struct wire_rng rng;
    struct wire_counters c;
};

struct wire_verdict {
    int32_t action;                 /* WIRE_DELIVER or WIRE_DROP_* */
    int32_t ncopies;
    int64_t at_us[WIRE_MAX_COPIES]; /* delivery time of each copy */
    int32_t nflips;
    uint32_t flip_bit[WIRE_MAX_FLIPS];   /* bit offsets in the frame to invert */
};

void wire_seed(struct wire_rng *r, uint64_t seed);
double wire_uniform(struct wire_rng *r);            /* [0, 1) */
double wire_normal(struct wire_rng *r);             /* mean 0, sigma 1 */
double wire_draw(struct wire_rng *r, const struct wire_param *p);   /* value +- variation, >= 0 */

/* Sets every parameter to "no impairment", fifo on, and seeds the generator. */
void wire_init(struct wire_dir *d, uint64_t seed);

/* Decides what happens to a frame of len bytes arriving at now_us. */
void wire_admit(struct wire_dir *d, uint32_t len, int64_t now_us, struct wire_verdict *v);

/* A copy of len bytes left the channel (frees capacity). */
void wire_delivered(struct wire_dir *d, uint32_t len);

#endif
