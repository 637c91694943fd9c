/*
 * mac_table.h — the switch's (MAC, VLAN) -> port learning table.
 *
 * Pure data structure: no I/O, no clock, no locking. Every call that depends on
 * time takes `now_ms` (milliseconds on any monotonic scale), so tests can walk
 * minutes of aging in microseconds. The data plane owns one table and calls it
 * under its lock; tests drive it directly through cffi.
 */
#ifndef PYVDE_MAC_TABLE_H
#define PYVDE_MAC_TABLE_H

#include <stdint.h>

/* Result of mt_learn(). */
enum {
    MT_NEW = 0,        /* a new entry was created */
    MT_REFRESHED = 1,  /* existing entry, same port: last-seen time updated */
    MT_MOVED = 2,      /* existing entry moved to the new port (older than min persistence) */
    MT_KEPT = 3,       /* existing entry on another port kept: seen there too recently (flapping) */
    MT_FULL = 4        /* no room: not learned (the frame is still forwarded, by flooding) */
};

struct mt_entry {
    uint8_t mac[6];
    uint16_t vlan;
    int32_t port;
    uint32_t bucket;   /* hash bucket index, as vde_switch's hash/print shows it */
    int64_t age_ms;    /* now - last seen */
};

struct mac_table;

/* Called for every entry that leaves the table (expiry, flush, resize), with the
 * entry's key and port; lets the data plane report "hash/-" events. */
typedef void (*mt_observer)(void *ctx, const uint8_t *mac, uint16_t vlan, int32_t port);
void mt_set_observer(struct mac_table *t, mt_observer fn, void *ctx);

/* buckets is rounded up to a power of two (>= 1); capacity bounds the number of entries. */
struct mac_table *mt_new(uint32_t buckets, uint32_t capacity);
void mt_free(struct mac_table *t);

/* Entries live expire_ms after they were last seen; an entry moves to another port
 * only if it was last seen at least minpers_ms ago. */
void mt_set_times(struct mac_table *t, int64_t expire_ms, int64_t minpers_ms);

int mt_learn(struct mac_table *t, const uint8_t *mac, uint16_t vlan, int32_t port, int64_t now_ms);
/* The port a (MAC, VLAN) was learned on, or -1 if unknown or expired. */
int32_t mt_lookup(struct mac_table *t, const uint8_t *mac, uint16_t vlan, int64_t now_ms);
/* Remove entries that have expired; returns how many. */
uint32_t mt_expire(struct mac_table *t, int64_t now_ms);
uint32_t mt_flush_port(struct mac_table *t, int32_t port);
uint32_t mt_flush_vlan(struct mac_table *t, uint16_t vlan);
void mt_flush(struct mac_table *t);
uint32_t mt_count(const struct mac_table *t);
uint32_t mt_buckets(const struct mac_table *t);
uint32_t mt_capacity(const struct mac_table *t);
/* Writes up to max live entries in bucket order; returns how many were written. */
uint32_t mt_dump(const struct mac_table *t, struct mt_entry *out, uint32_t max, int64_t now_ms);
/* Fills *out for one (MAC, VLAN); returns 0, or -1 if absent or expired. */
int mt_find(const struct mac_table *t, const uint8_t *mac, uint16_t vlan, int64_t now_ms,
            struct mt_entry *out);
/* Empties the table and changes its bucket count (capacity follows: max(4096, 8*buckets)).
 * Returns 0, or -1 if memory could not be allocated (the table is then unchanged). */
int mt_resize(struct mac_table *t, uint32_t buckets);
uint32_t mt_capacity_for(uint32_t buckets);

#endif
