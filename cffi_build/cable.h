/*
 * cable.h — pyvde-cable's engine: a thread that carries Ethernet frames between a
 * switch's data socket and UDP, in batches (recvmmsg/sendmmsg), in one of four ways:
 *
 *   CABLE_PLAIN   one raw frame per datagram (vdeplug4's udp://)
 *   CABLE_SEALED  one frame per datagram, sealed with ChaCha20-Poly1305 (IETF, libsodium)
 *                 under a session's key for that direction, with a sliding replay window
 *   CABLE_VXLAN   RFC 7348: an 8-byte header (flags 0x08, VNI); inner source MAC ->
 *                 VTEP learned; unknown and broadcast frames to the group and the peers
 *   CABLE_VXVDE   vdeplug4's vxvde://: the same header, matched exactly; a multicast
 *                 socket to listen, a unicast one to send; a header alone says goodbye
 *
 * Sealed DATA on the wire: 0x03 | receiver index (4, LE) | counter (8, LE) | ciphertext |
 * tag (16); the nonce is 4 zero bytes and the counter, the 13 header bytes are the
 * associated data; an empty frame is a keepalive. Everything else that arrives in sealed
 * mode (handshakes) goes to Python as an event, as does DATA for an index no session
 * has (at most one such event a second). Python (plugs/cable/handshake.py) installs the
 * sessions. Addresses are IPv4, network byte order; ports host order.
 */
#ifndef PYVDE_CABLE_H
#define PYVDE_CABLE_H

#include <stdint.h>

#define CABLE_PLAIN 0
#define CABLE_SEALED 1
#define CABLE_VXLAN 2
#define CABLE_VXVDE 3

#define CABLE_DATA 3            /* the type byte of sealed DATA */
#define CABLE_HEADER 13         /* sealed DATA: type, index, counter */
#define CABLE_TAG 16
#define CABLE_VX_HEADER 8
#define CABLE_MAX_FRAME 65535   /* whatever the path: a frame is at most this */
#define CABLE_MAX_PEERS 64      /* vxlan: --peer addresses */

/* session slots */
#define CABLE_CURRENT 0         /* sends, and receives */
#define CABLE_PENDING 1         /* receives; the first authentic DATA makes it current */
#define CABLE_PREVIOUS 2        /* receives, for a while after a new session */

/* events (struct cable_event.kind) */
#define CABLE_EV_CONTROL 1      /* a datagram for Python (sealed mode, not DATA) */
#define CABLE_EV_UNKNOWN 2      /* DATA for an index no session has (index, source) */
#define CABLE_EV_PROMOTED 3     /* the pending session became current (index) */
#define CABLE_EV_ENDED 4        /* the engine stopped (why: cable_ended) */

/* why the engine ended */
#define CABLE_RUNNING 0
#define CABLE_END_SWITCH 1      /* the switch let go (data socket or watch fd) */
#define CABLE_STOPPED 2
#define CABLE_FAILED 3          /* a system error (errno in cable_stats.error) */

struct cable_config {
    int mode;                   /* CABLE_* */
    int switch_fd;              /* the switch's data socket: connected, one frame each */
    int watch_fd;               /* readable or hung up: the switch let go (-1: none) */
    int udp_fd;                 /* bound UDP socket; every datagram leaves from it */
    int mcast_fd;               /* vxvde: the socket bound to group:port (-1 otherwise) */
    uint32_t max_frame;         /* longer frames from the switch are dropped (oversize) */
    uint32_t peer_addr;         /* plain, sealed: where frames go (0: the last sender) */
    uint16_t peer_port;
    uint32_t vni;               /* vxlan, vxvde */
    uint32_t group_addr;        /* vxlan (0: none), vxvde: the multicast group */
    uint16_t udp_port;          /* vxlan: the VTEP port (learned VTEPs are addr:udp_port);
                                   vxvde: the group's port */
    uint32_t peers[CABLE_MAX_PEERS];    /* vxlan: --peer addresses, flooded to */
    uint32_t n_peers;
    uint32_t expire_ms;         /* vxlan, vxvde: learned MACs live this long (128000) */
};

struct cable_stats {
    uint64_t to_net_frames, to_net_bytes;       /* switch -> UDP, delivered */
    uint64_t from_net_frames, from_net_bytes;   /* UDP -> switch, delivered */
    uint64_t oversize;          /* frames from the switch too long for the path */
    uint64_t runts;             /* frames shorter than 14 bytes (either way) */
    uint64_t send_errors;       /* datagrams the network refused (EMSGSIZE: path MTU) */
    uint64_t no_session;        /* sealed: frames from the switch before any session */
    uint64_t truncated;         /* datagrams too short for their header */
    uint64_t bad_tag;           /* sealed: failed authentication (forged, wrong key) */
    uint64_t replayed;          /* sealed: counter seen before or too old */
    uint64_t unknown_index;     /* sealed: DATA for no session of ours */
    uint64_t bad_header;        /* vxlan/vxvde: wrong flags or VNI; or an unknown type */
    uint64_t own;               /* vxvde: our own datagrams, back through multicast */
    uint64_t control;           /* datagrams handed to Python */
    uint64_t control_dropped;   /* handshake-shaped datagrams over the rate (64 a second) */
    uint64_t keepalives_in, keepalives_out;
    uint64_t learned;           /* vxlan/vxvde: MACs learned or moved */
    int64_t last_auth_rx_ms;    /* monotonic ms of the last authentic datagram (0: none) */
    int64_t last_tx_ms;         /* monotonic ms of the last datagram sent */
    uint32_t peer_addr;         /* plain, sealed: where frames go now (0: nowhere yet) */
    uint16_t peer_port;
    int32_t error;              /* CABLE_FAILED: the errno */
};

struct cable_event {
    int kind;                   /* CABLE_EV_* */
    uint32_t addr;              /* the datagram's source */
    uint16_t port;
    uint32_t index;             /* UNKNOWN, PROMOTED: the session index */
    uint32_t len;               /* CONTROL: bytes in data */
    uint8_t data[256];
};

struct cable_engine;

/* A new engine (its thread not started); NULL if the config is bad or memory short. */
struct cable_engine *cable_new(const struct cable_config *cfg);
int cable_start(struct cable_engine *e);        /* 0, or -errno */
void cable_stop(struct cable_engine *e);        /* stops and joins the thread */
void cable_free(struct cable_engine *e);
int cable_ended(struct cable_engine *e);        /* CABLE_RUNNING or why it ended */

/* Events: the fd is readable while some wait; each call takes one (1), or none (0). */
int cable_event_fd(struct cable_engine *e);
int cable_next_event(struct cable_engine *e, struct cable_event *out);

/* Sealed mode: installs a session in a slot (CURRENT, PENDING), keys 32 bytes each,
 * with where the peer is. Installing CURRENT (as promoting PENDING does) moves the old
 * one to PREVIOUS for 10 s. Returns 0, or -1 (bad slot or mode). */
int cable_install(struct cable_engine *e, int slot, uint32_t my_index, uint32_t peer_index,
                  const uint8_t *send_key, const uint8_t *recv_key, uint32_t addr,
                  uint16_t port);
/* Sealed mode: sends an empty DATA (a keepalive) now. 0, or -1 without a session. */
int cable_keepalive(struct cable_engine *e);
/* Sends a datagram (a handshake) from the engine's socket. 0 or -errno. */
int cable_send_raw(struct cable_engine *e, const uint8_t *data, uint32_t len, uint32_t addr,
                   uint16_t port);

void cable_get_stats(struct cable_engine *e, struct cable_stats *out);

/* The pure parts, for tests: the replay window of 1024 counters (0: new, marks it;
 * -1: seen, or older than the window), and sealing/opening one datagram. */
struct cable_replay {
    uint64_t top;               /* the highest counter accepted + 1 (0: none yet) */
    uint64_t bits[16];
};
int cable_replay_check(struct cable_replay *r, uint64_t counter);
int cable_seal(const uint8_t *key, uint32_t index, uint64_t counter, const uint8_t *frame,
               uint32_t len, uint8_t *out);    /* writes 13 + len + 16 bytes; returns that */
int cable_open(const uint8_t *key, const uint8_t *dgram, uint32_t len, uint8_t *frame);
               /* returns the frame's length, or -1 if it does not authenticate */

#endif
