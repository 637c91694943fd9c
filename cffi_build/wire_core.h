/*
 * wire_core.h — pyvde-wirefilter's per-frame decisions and its Markov model, without I/O.
 *
 * Pure: the time of arrival is passed in, randomness comes from a seeded generator in
 * the direction's state, and the answer is a verdict (drop and why, or the delivery
 * times of each copy and the bits to flip). The engine that reads, schedules and
 * writes frames is built on top of this; tests drive it directly to measure accuracy.
 *
 * Parameters (struct wire_params) belong to a Markov node and a direction; the state
 * the models keep between frames (struct wire_dir) belongs to the direction. With one
 * node (the default) the Markov model is off and node 0's parameters always apply.
 */
#ifndef PYVDE_WIRE_CORE_H
#define PYVDE_WIRE_CORE_H

#include <stdint.h>

/* Distributions of a drawn value: value +- variation. For the shaped ones the
 * variation is 3 sigma, as wirefilter's N ("98% inside"). */
#define WIRE_UNIFORM 0
#define WIRE_NORMAL 1
#define WIRE_PARETO 2           /* Pareto, shape 3, shifted and scaled to the mean and sigma */
#define WIRE_PARETONORMAL 3     /* 0.75 normal + 0.25 Pareto, scaled to the mean and sigma */

/* Loss models */
#define WIRE_LOSS_WF 0          /* wirefilter: loss percent, Gilbert when lostburst > 0 */
#define WIRE_LOSS_GE 1          /* netem gemodel: Gilbert-Elliott p, r, 1-h, 1-k */
#define WIRE_LOSS_4STATE 2      /* netem state: p13, p31, p32, p23, p14 */

#define WIRE_DELIVER 0
#define WIRE_DROP_MTU 1
#define WIRE_DROP_LOSS 2
#define WIRE_DROP_CAPACITY 3
#define WIRE_DROP_CORRUPT 4     /* damaged and discard_corrupt is on (a receiver's FCS check) */

#define WIRE_MAX_COPIES 8
#define WIRE_MAX_FLIPS 16
#define WIRE_MAX_NODES 64

struct wire_rng {
    uint64_t s[4];          /* xoshiro256** */
};

/* A value drawn per frame: value +- variation, distributed as dist. */
struct wire_param {
    double value, variation;
    int32_t dist;
};

/* The parameters of one direction in one Markov node. Percentages are 0..100. */
struct wire_params {
    /* wirefilter's */
    struct wire_param loss;         /* percent */
    struct wire_param lostburst;    /* mean loss burst, frames; > 0: Gilbert model */
    struct wire_param delay;        /* milliseconds */
    struct wire_param dup;          /* percent; every copy may be duplicated again */
    struct wire_param band;         /* channel bandwidth, bytes/s; 0: unlimited */
    struct wire_param speed;        /* interface speed, bytes/s: input busy len/speed */
    struct wire_param noise;        /* damaged bits per 2^20 bytes */
    struct wire_param capacity;     /* bytes waiting in the channel; 0: no limit */
    uint32_t mtu;                   /* frames longer are dropped; 0: no limit */
    /* netem's */
    int32_t loss_model;             /* WIRE_LOSS_* */
    double ge_p, ge_r, ge_1h, ge_1k;                /* percent */
    double p13, p31, p32, p23, p14;                 /* percent */
    double loss_corr, delay_corr, dup_corr;         /* percent, 0: independent */
    double reorder, reorder_corr;   /* percent of frames sent at once, ahead of the queue */
    uint32_t reorder_gap;           /* at most one reordered frame per gap frames (>= 1) */
    double corrupt, corrupt_corr;   /* percent of frames with one bit flipped */
    int32_t discard_corrupt;        /* 1: damaged frames are dropped, not delivered */
    double rate;                    /* bytes/s on the wire, netem's accounting; 0: none */
    int32_t rate_overhead;          /* bytes added to (or removed from) every frame */
    uint32_t rate_cell;             /* cell size: frames take whole cells; 0: none */
    int32_t rate_cell_overhead;     /* bytes added to every cell */
    double slot_min_us, slot_max_us;    /* delivery slots open this far apart; 0: none */
    uint32_t slot_packets;          /* frames per slot; 0: no limit */
    uint64_t slot_bytes;            /* bytes per slot; 0: no limit */
};

struct wire_counters {
    uint64_t in, delivered, dup_copies;
    uint64_t drop_mtu, drop_loss, drop_capacity, drop_corrupt;
    uint64_t flipped_bits, corrupted, reordered;
};

/* The state of one direction. */
struct wire_dir {
    int32_t fifo;                   /* 1: copies leave in arrival order */
    int32_t loss_state;             /* Gilbert/GE: 0 good 1 bad; 4-state: 1..4 */
    int64_t band_free_us;           /* when the channel has sent what it holds */
    int64_t rate_last_us;           /* netem rate: when the last frame leaves */
    int64_t speed_free_us;          /* when the input interface is free again */
    int64_t slot_next_us;           /* netem slot: when the next slot opens */
    int64_t slot_packets_left, slot_bytes_left;
    int64_t last_delivery_us;
    uint32_t reorder_count;
    double z_loss, z_delay, z_dup, z_reorder, z_corrupt;   /* correlated draws */
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

/* The Markov model: every time_ms the current node moves along an edge chosen by the
 * weights (percent; a node's self loop gets 100 minus its other edges). */
struct wire_markov {
    int32_t numnodes, current;
    double time_ms;
    int64_t next_us;                /* time of the next step */
    double weight[WIRE_MAX_NODES][WIRE_MAX_NODES];
    struct wire_rng rng;
};

void wire_seed(struct wire_rng *r, uint64_t seed);
double wire_uniform(struct wire_rng *r);            /* [0, 1) */
double wire_normal(struct wire_rng *r);             /* mean 0, sigma 1 */
double wire_draw(struct wire_rng *r, const struct wire_param *p);   /* >= 0 */
/* The same with the previous draw's correlation (percent) carried in *z. */
double wire_draw_corr(struct wire_rng *r, const struct wire_param *p, double corr, double *z);
/* A uniform [0, 1) correlated (percent) with the previous one through *z. */
double wire_uniform_corr(struct wire_rng *r, double corr, double *z);

/* Parameters: no impairment. State: fifo on, generator seeded. */
void wire_params_init(struct wire_params *p);
void wire_init(struct wire_dir *d, uint64_t seed);

/* Decides what happens to a frame of len bytes arriving at now_us under parameters p. */
void wire_admit(struct wire_dir *d, const struct wire_params *p, uint32_t len, int64_t now_us,
                struct wire_verdict *v);

/* A copy of len bytes left the channel (frees capacity). */
void wire_delivered(struct wire_dir *d, uint32_t len);

/* One node, no edges, time 100 ms. */
void wire_markov_init(struct wire_markov *m, uint64_t seed);
/* Resizes to n nodes (1..WIRE_MAX_NODES), keeping the edges between surviving nodes. */
int wire_markov_resize(struct wire_markov *m, int n);
/* Sets the weight of edge from -> to (percent); -1 if the nodes do not exist or the
 * node's other edges would weigh more than 100. */
int wire_markov_setedge(struct wire_markov *m, int from, int to, double weight);
/* (Re)starts the clock: the first step is taken now, the next ones every time_ms. */
void wire_markov_start(struct wire_markov *m, int64_t now_us);
/* Takes the steps due by now_us; returns the current node. */
int wire_markov_advance(struct wire_markov *m, int64_t now_us);

#endif
