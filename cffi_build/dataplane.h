/*
 * dataplane.h — the C API Python uses to drive pyvde-switch's forwarding engine.
 * See the comment at the top of dataplane.c for threads and buffer ownership.
 * Functions returning int return 0 (or an id >= 0) on success and -errno on failure.
 */
#ifndef PYVDE_DATAPLANE_H
#define PYVDE_DATAPLANE_H

#include <stdint.h>
#include "mac_table.h"

#define DP_NOVLAN 4095
#define DP_NVLANS 4096
#define DP_MIN_FRAME 14
#define DP_MAX_FRAME 65550

struct dp_port_stats {
    uint64_t in_frames, in_bytes;     /* every received frame of >= 14 bytes */
    uint64_t out_frames, out_bytes;   /* copies handed to the kernel for an endpoint */
    uint64_t drop_runt;               /* shorter than 14 bytes (18 if 802.1Q-tagged) */
    uint64_t drop_oversize;           /* longer than the maximum frame size */
    uint64_t drop_vlan;               /* VLAN not allowed on the ingress port */
    uint64_t drop_tx;                 /* copies not delivered: receiver full or gone */
    uint64_t drop_mirror;             /* received on a mirror destination (it only listens) */
};

struct dp_vlan_stats {
    uint64_t in_frames, in_bytes;
};

struct dp_stats {
    uint64_t rounds;          /* epoll wake-ups that found work */
    uint64_t rx_calls;        /* recvmmsg() calls that returned frames */
    uint64_t rx_frames;
    uint64_t tx_calls;        /* sendmmsg() calls */
    uint64_t tx_frames;
    uint64_t learn_full;      /* source MACs not learned because the table was full */
    uint64_t mac_moved;       /* entries moved to another port */
    uint64_t mac_kept;        /* moves refused by min persistence (flapping) */
    uint64_t endpoints_dead;  /* endpoints whose data socket reported hang-up or error */
    uint64_t events_lost;     /* events dropped because nobody read the queue in time */
};

/* Events for the control plane, queued by the data plane and read with dp_events_read()
 * when dp_event_fd() is readable: MACs learned or forgotten (only while hash events are
 * on) and captures stopped by a write error. */
#define DP_EV_HASH_ADD 1
#define DP_EV_HASH_DEL 2
#define DP_EV_CAPTURE_ERROR 3

struct dp_event {
    int32_t kind;
    int32_t port;
    int32_t err;              /* DP_EV_CAPTURE_ERROR: the errno that stopped the capture */
    uint16_t vlan;
    uint8_t mac[6];
};

struct dp_capture_info {
    int32_t active;
    int32_t err;              /* errno of the write that stopped the last capture, or 0 */
    uint64_t frames, bytes;   /* records written by the current (or last) capture */
    uint64_t dropped;         /* records lost because the disk was slower than the port */
};

typedef struct dp dp_t;

/* nslots: port numbers 0 .. nslots-1 exist for the engine. maxframe: 14 .. 65550. */
dp_t *dp_new(int nslots, int maxframe, uint32_t hashsize);
int dp_start(dp_t *dp);                /* starts the data-plane thread */
void dp_stop(dp_t *dp);                /* stops and joins it (idempotent) */
void dp_free(dp_t *dp);                /* stops, closes every endpoint fd, frees */

/* Takes ownership of fd (a connected, non-blocking SOCK_DGRAM socket) and returns an
 * endpoint id. The fd is closed by dp_remove_endpoint or dp_free. */
int dp_add_endpoint(dp_t *dp, int port, int fd);
int dp_remove_endpoint(dp_t *dp, int id);
int dp_endpoint_alive(dp_t *dp, int id);   /* 1, 0 after hang-up/error, -errno if no such id */

int dp_set_nslots(dp_t *dp, int nslots);   /* -EBUSY if an active port would vanish */
int dp_get_nslots(dp_t *dp);
void dp_set_hub(dp_t *dp, int on);
int dp_get_hub(dp_t *dp);
int dp_get_maxframe(dp_t *dp);

int dp_port_stats(dp_t *dp, int port, struct dp_port_stats *out);
int dp_port_active(dp_t *dp, int port);
void dp_reset_stats(dp_t *dp, int port);   /* port < 0: every port */
void dp_get_stats(dp_t *dp, struct dp_stats *out);

/* MAC table (times in milliseconds). */
void dp_table_config(dp_t *dp, int64_t expire_ms, int64_t minpers_ms, int64_t gcint_ms);
int dp_table_resize(dp_t *dp, uint32_t buckets);
uint32_t dp_table_buckets(dp_t *dp);
uint32_t dp_table_count(dp_t *dp);
int dp_table_dump(dp_t *dp, struct mt_entry *out, uint32_t max);
int dp_table_find(dp_t *dp, const uint8_t *mac, int vlan, struct mt_entry *out);
void dp_table_flush(dp_t *dp);

/* Clock: real CLOCK_MONOTONIC by default; tests switch to a manual clock and move it. */
void dp_clock_manual(dp_t *dp, int64_t now_ms);
void dp_clock_real(dp_t *dp);
int64_t dp_clock_now(dp_t *dp);

/* 802.1Q VLANs. VLAN 0 exists from the start; every port's untagged VLAN is 0. */
int dp_vlan_create(dp_t *dp, int vlan);
int dp_vlan_remove(dp_t *dp, int vlan);            /* -EADDRINUSE if any port is a member */
int dp_vlan_exists(dp_t *dp, int vlan);
int dp_port_set_untagged(dp_t *dp, int port, int vlan);   /* vlan 4095: no untagged VLAN */
int dp_port_get_untagged(dp_t *dp, int port);
int dp_vlan_add_tagged(dp_t *dp, int vlan, int port);
int dp_vlan_del_tagged(dp_t *dp, int vlan, int port);
int dp_vlan_is_tagged(dp_t *dp, int vlan, int port);
int dp_vlan_stats(dp_t *dp, int vlan, struct dp_vlan_stats *out);

/* Events. */
int dp_event_fd(dp_t *dp);
void dp_set_hash_events(dp_t *dp, int on);
int dp_events_read(dp_t *dp, struct dp_event *out, int max);   /* returns how many */

/* Capture: every frame a port receives and every copy sent to it is appended to fd as
 * a pcap record (microsecond timestamps); the caller has written the file header and
 * passes the offset after it. Records are handed to a writer thread at the end of every
 * round, so a reader sees them at once; if the disk is slower than the port, records
 * are dropped (counted) rather than slowing forwarding. A failed write (disk full...) truncates the file to its
 * last whole record, stops the capture and queues DP_EV_CAPTURE_ERROR. The data plane
 * owns fd from dp_capture_start() on and closes it. */
int dp_capture_start(dp_t *dp, int port, int fd, int64_t offset);   /* -EBUSY if running */
/* Writes what is buffered and closes the file; -ENOENT if no capture, -errno if a write
 * failed (before or now; the capture is closed all the same). */
int dp_capture_stop(dp_t *dp, int port);
int dp_capture_info(dp_t *dp, int port, struct dp_capture_info *out);

/* Mirroring: port dst gets a copy of every frame src receives and of every copy sent to
 * src. A mirror destination takes no part in normal forwarding (as a SPAN port): it gets
 * no other traffic and what it sends is dropped (counted in drop_mirror). dst -1
 * turns src's mirror off. */
int dp_mirror_set(dp_t *dp, int src, int dst);
int dp_mirror_get(dp_t *dp, int src);                                /* dst or -1 */
int dp_mirror_sources(dp_t *dp, int dst);     /* how many ports mirror to dst */

#endif
