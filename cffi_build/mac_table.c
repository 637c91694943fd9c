/*
 * mac_table.c — (MAC, VLAN) -> port learning table with aging and minimum persistence.
 *
 * Layout: a power-of-two array of bucket heads and a fixed pool of entries chained
 * through 32-bit indices. The pool is allocated once, so a flood of random source
 * MACs can fill the table (mt_learn then returns MT_FULL) but never grows memory.
 * The bucket of a key is the 64-bit mix vde_switch uses, so `hash/print` bucket
 * numbers agree with vde_switch's for the same table size.
 *
 * Invariants: every used entry is on exactly one chain, the chain of
 * bucket(key); every unused entry is on the free list; count == number of used entries.
 * Expiry is lazy (lookups ignore and unlink expired entries) plus mt_expire() sweeps.
 */
#include "mac_table.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

struct mt_slot {
    uint64_t key;        /* MAC in the low 48 bits, VLAN in bits 48..59 */
    int64_t last_seen;
    int32_t port;
    uint32_t next;
};

struct mac_table {
    uint32_t nbuckets;   /* power of two */
    uint32_t capacity;
    uint32_t count;
    uint32_t free_head;
    int64_t expire_ms;
    int64_t minpers_ms;
    uint32_t *heads;
    struct mt_slot *slots;
    mt_observer observer;
    void *observer_ctx;
};

static uint64_t make_key(const uint8_t *mac, uint16_t vlan)
{
    uint64_t k = 0;
    for (int i = 0; i < 6; i++)
        k = (k << 8) | mac[i];
    return k | ((uint64_t)(vlan & 0xfff) << 48);
}

static void key_mac(uint64_t key, uint8_t *mac)
{
    for (int i = 5; i >= 0; i--) {
        mac[i] = key & 0xff;
        key >>= 8;
    }
}

static uint32_t bucket_of(const struct mac_table *t, uint64_t key)
{
    /* 64-bit finaliser mix (two multiply/xor-shift rounds). */
    uint64_t h = key;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)(h & (t->nbuckets - 1));
}

static uint32_t round_pow2(uint32_t n)
{
    uint32_t p = 1;
    while (p < n && p < (1u << 30))
        p <<= 1;
    return p;
}

uint32_t mt_capacity_for(uint32_t buckets)
{
    uint64_t c = (uint64_t)round_pow2(buckets) * 8;
    if (c < 4096)
        c = 4096;
    if (c > (1u << 24))
        c = 1u << 24;
    return (uint32_t)c;
}

static void reset(struct mac_table *t)
{
    for (uint32_t i = 0; i < t->nbuckets; i++)
        t->heads[i] = NIL;
    for (uint32_t i = 0; i < t->capacity; i++)
        t->slots[i].next = (i + 1 < t->capacity) ? i + 1 : NIL;
    t->free_head = t->capacity ? 0 : NIL;
    t->count = 0;
}

struct mac_table *mt_new(uint32_t buckets, uint32_t capacity)
{
    struct mac_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nbuckets = round_pow2(buckets ? buckets : 1);
    t->capacity = capacity ? capacity : 1;
    t->heads = malloc(sizeof *t->heads * t->nbuckets);
    t->slots = malloc(sizeof *t->slots * t->capacity);
    if (!t->heads || !t->slots) {
        mt_free(t);
        return NULL;
    }
    t->expire_ms = 100000;
    t->minpers_ms = 3000;
    reset(t);
    return t;
}

void mt_free(struct mac_table *t)
{
    if (!t)
        return;
    free(t->heads);
    free(t->slots);
    free(t);
}

void mt_set_times(struct mac_table *t, int64_t expire_ms, int64_t minpers_ms)
{
    t->expire_ms = expire_ms;
    t->minpers_ms = minpers_ms;
}

static int expired(const struct mac_table *t, const struct mt_slot *s, int64_t now_ms)
{
    return now_ms - s->last_seen >= t->expire_ms;
}

void mt_set_observer(struct mac_table *t, mt_observer fn, void *ctx)
{
    t->observer = fn;
    t->observer_ctx = ctx;
}

static void report_removal(const struct mac_table *t, const struct mt_slot *s)
{
    if (t->observer) {
        uint8_t mac[6];
        key_mac(s->key, mac);
        t->observer(t->observer_ctx, mac, (uint16_t)(s->key >> 48), s->port);
    }
}

/* Reports every entry before the whole table is emptied. */
static void report_all(const struct mac_table *t)
{
    if (!t->observer)
        return;
    for (uint32_t b = 0; b < t->nbuckets; b++)
        for (uint32_t i = t->heads[b]; i != NIL; i = t->slots[i].next)
            report_removal(t, &t->slots[i]);
}

/* Unlinks slot i, whose predecessor on its chain is prev (NIL if it is the head). */
static void unlink_slot(struct mac_table *t, uint32_t b, uint32_t prev, uint32_t i)
{
    report_removal(t, &t->slots[i]);
    if (prev == NIL)
        t->heads[b] = t->slots[i].next;
    else
        t->slots[prev].next = t->slots[i].next;
    t->slots[i].next = t->free_head;
    t->free_head = i;
    t->count--;
}

/* Finds the live slot for key, unlinking an expired one on the way. */
static uint32_t find_slot(struct mac_table *t, uint64_t key, int64_t now_ms)
{
    uint32_t b = bucket_of(t, key);
    uint32_t prev = NIL;
    for (uint32_t i = t->heads[b]; i != NIL; prev = i, i = t->slots[i].next) {
        if (t->slots[i].key != key)
            continue;
        if (expired(t, &t->slots[i], now_ms)) {
            unlink_slot(t, b, prev, i);
            return NIL;
        }
        return i;
    }
    return NIL;
}

int mt_learn(struct mac_table *t, const uint8_t *mac, uint16_t vlan, int32_t port, int64_t now_ms)
{
    uint64_t key = make_key(mac, vlan);
    uint32_t i = find_slot(t, key, now_ms);
    if (i != NIL) {
        struct mt_slot *s = &t->slots[i];
        if (s->port == port) {
            s->last_seen = now_ms;
            return MT_REFRESHED;
        }
        if (now_ms - s->last_seen < t->minpers_ms)
            return MT_KEPT;
        s->port = port;
        s->last_seen = now_ms;
        return MT_MOVED;
    }
    if (t->free_head == NIL && mt_expire(t, now_ms) == 0)
        return MT_FULL;
    i = t->free_head;
    t->free_head = t->slots[i].next;
    uint32_t b = bucket_of(t, key);
    t->slots[i].key = key;
    t->slots[i].port = port;
    t->slots[i].last_seen = now_ms;
    t->slots[i].next = t->heads[b];
    t->heads[b] = i;
    t->count++;
    return MT_NEW;
}

int32_t mt_lookup(struct mac_table *t, const uint8_t *mac, uint16_t vlan, int64_t now_ms)
{
    uint32_t i = find_slot(t, make_key(mac, vlan), now_ms);
    return i == NIL ? -1 : t->slots[i].port;
}

/* Removes every entry for which cond (an expression of the slot `s`) holds. */
#define SWEEP(t, cond)                                                         \
    do {                                                                       \
        for (uint32_t b_ = 0; b_ < (t)->nbuckets; b_++) {                      \
            uint32_t prev_ = NIL, i_ = (t)->heads[b_];                         \
            while (i_ != NIL) {                                                \
                struct mt_slot *s = &(t)->slots[i_];                           \
                uint32_t next_ = s->next;                                      \
                if (cond) {                                                    \
                    unlink_slot((t), b_, prev_, i_);                           \
                    removed++;                                                 \
                } else {                                                       \
                    prev_ = i_;                                                \
                }                                                              \
                i_ = next_;                                                    \
            }                                                                  \
        }                                                                      \
    } while (0)

uint32_t mt_expire(struct mac_table *t, int64_t now_ms)
{
    uint32_t removed = 0;
    SWEEP(t, expired(t, s, now_ms));
    return removed;
}

uint32_t mt_flush_port(struct mac_table *t, int32_t port)
{
    uint32_t removed = 0;
    SWEEP(t, s->port == port);
    return removed;
}

uint32_t mt_flush_vlan(struct mac_table *t, uint16_t vlan)
{
    uint32_t removed = 0;
    SWEEP(t, (uint16_t)(s->key >> 48) == (vlan & 0xfff));
    return removed;
}

void mt_flush(struct mac_table *t)
{
    report_all(t);
    reset(t);
}

uint32_t mt_count(const struct mac_table *t) { return t->count; }
uint32_t mt_buckets(const struct mac_table *t) { return t->nbuckets; }
uint32_t mt_capacity(const struct mac_table *t) { return t->capacity; }

static void fill(uint32_t b, const struct mt_slot *s, int64_t now_ms,
                 struct mt_entry *out)
{
    key_mac(s->key, out->mac);
    out->vlan = (uint16_t)(s->key >> 48);
    out->port = s->port;
    out->bucket = b;
    out->age_ms = now_ms - s->last_seen;
}

uint32_t mt_dump(const struct mac_table *t, struct mt_entry *out, uint32_t max, int64_t now_ms)
{
    uint32_t n = 0;
    for (uint32_t b = 0; b < t->nbuckets && n < max; b++)
        for (uint32_t i = t->heads[b]; i != NIL && n < max; i = t->slots[i].next)
            if (!expired(t, &t->slots[i], now_ms))
                fill(b, &t->slots[i], now_ms, &out[n++]);
    return n;
}

int mt_find(const struct mac_table *t, const uint8_t *mac, uint16_t vlan, int64_t now_ms,
            struct mt_entry *out)
{
    uint64_t key = make_key(mac, vlan);
    uint32_t b = bucket_of(t, key);
    for (uint32_t i = t->heads[b]; i != NIL; i = t->slots[i].next) {
        if (t->slots[i].key == key && !expired(t, &t->slots[i], now_ms)) {
            fill(b, &t->slots[i], now_ms, out);
            return 0;
        }
    }
    return -1;
}

int mt_resize(struct mac_table *t, uint32_t buckets)
{
    uint32_t nb = round_pow2(buckets ? buckets : 1);
    uint32_t cap = mt_capacity_for(nb);
    uint32_t *heads = malloc(sizeof *heads * nb);
    struct mt_slot *slots = malloc(sizeof *slots * cap);
    if (!heads || !slots) {
        free(heads);
        free(slots);
        return -1;
    }
    report_all(t);
    free(t->heads);
    free(t->slots);
    t->heads = heads;
    t->slots = slots;
    t->nbuckets = nb;
    t->capacity = cap;
    reset(t);
    return 0;
}
