/*
 * tcp_fast.h — pyvde-slirp's data path for established TCP connections, in C.
 *
 * plugs/slirp/tcp.py decides everything about a connection. While a connection is in the
 * steady state (ESTABLISHED, nothing unusual pending), the router hands a copy of its
 * state to C (a struct fast_conn in the fast_table), and from then on the frames of that
 * connection never reach Python: fast_batch() receives a batch of frames from the switch
 * (recvmmsg), and for every plain in-order segment of a fast connection writes its payload
 * to the host socket, discards what the guest acknowledged from the socket (MSG_TRUNC),
 * sends the guest an ACK per batch and peeks new host data into data segments
 * (SO_PEEK_OFF, scattered straight into the frames), all sent with sendmmsg.
 *
 * Anything else gives the connection back to Python ("ejects" it, with the reason) before
 * the frame that needs a decision is handed over: out-of-order or old segments, duplicate
 * ACKs, a zero window, flags other than ACK/PSH, TCP options, a socket that does not take
 * a whole segment (the frame goes to tcp.py with the part taken already counted), host
 * EOF or a socket error. Python copies the state back into its
 * TcpConnection and carries on as if it had seen every frame itself. Timers stay in
 * Python: it reads rto_at and last_activity and ejects the connection when one is due.
 *
 * Sequence numbers are kept as in tcp.py: 64-bit offsets from each side's ISN.
 */
#ifndef PYVDE_TCP_FAST_H
#define PYVDE_TCP_FAST_H

#include <stddef.h>
#include <stdint.h>

/* why a connection left the fast path (fast_conn.eject) */
#define FAST_IN 0               /* still in it */
#define FAST_EJECT_FRAME 1      /* a frame that needs tcp.py (handed over with the batch) */
#define FAST_EJECT_EOF 2        /* the host closed its side */
#define FAST_EJECT_ERROR 3      /* the host socket failed */
#define FAST_EJECT_PYTHON 4     /* taken back by Python (a timer, a close) */

struct fast_conn {
    int id;                     /* Python's handle for the connection */
    int fd;                     /* the host socket */
    uint8_t guest_mac[6];
    uint8_t guest_ip[4];
    uint8_t remote_ip[4];
    uint16_t guest_port;
    uint16_t remote_port;
    uint32_t iss;               /* our ISN (wire) */
    uint32_t guest_isn;         /* the guest's ISN (wire) */
    uint64_t snd_una;           /* host -> guest, offsets from iss */
    uint64_t snd_nxt;
    uint64_t snd_max;
    uint64_t snd_wnd;           /* the guest's window, scaled */
    uint64_t cwnd;
    uint64_t ssthresh;
    uint64_t max_window;
    uint64_t rcv_nxt;           /* guest -> host, offset from guest_isn */
    uint32_t mss;               /* segment size towards the guest */
    uint32_t peek_max;          /* at most this much per peek */
    uint32_t guest_wscale;
    uint32_t window_field;      /* the window we advertise, as it goes on the wire */
    double rto;
    double rto_initial;
    double rto_at;              /* 0: no retransmission timer */
    double last_activity;
    double last_guest;
    int want_read;              /* out: wait for the socket to be readable, then fast_pump */
    int eject;                  /* out: FAST_IN, or why it left */
    int in_table;
    int kick;                   /* internal: ACKs advanced, peek at the end of the batch */
    int ack_due;                /* internal: data taken, ACK at the end of the batch */
    int touched;
};

struct fast_table;

/* A table for up to 4096 connections, for frames to router_mac on link_fd, a link of
 * kind link_kind (SLIRP_LINK_*, slirp_link.h), with room for batches of 64 received
 * frames of up to 65550 bytes. */
struct fast_table *fast_table_new(int link_fd, int link_kind, const uint8_t *router_mac);
void fast_table_free(struct fast_table *t);
int fast_add(struct fast_table *t, struct fast_conn *c);    /* 0, or -1 (full or there) */
void fast_remove(struct fast_table *t, struct fast_conn *c, int reason);

/* One batch. Receives up to 64 frames (slirp_link_recv, non-blocking), handles those of fast
 * connections, sends what they caused. Returns the number of frames received (0: none
 * now), or -1 when the link is gone. Afterwards: */
int fast_batch(struct fast_table *t, double now);
/* the frames Python must handle, in order: fast_py_count() of them, each at
 * fast_py_frame(t, i) with length fast_py_len(t, i) (valid until the next fast_batch) */
int fast_py_count(struct fast_table *t);
const uint8_t *fast_py_frame(struct fast_table *t, int i);
uint32_t fast_py_len(struct fast_table *t, int i);
/* the connections whose state changed for Python (ejected, or now wanting readability):
 * their ids */
int fast_changed_count(struct fast_table *t);
int fast_changed_id(struct fast_table *t, int i);
/* frames built but not taken by the link (the switch was full): Python queues them; they lie
 * end to end from fast_unsent(t) */
int fast_unsent_count(struct fast_table *t);
const uint8_t *fast_unsent(struct fast_table *t);
uint32_t fast_unsent_len(struct fast_table *t, int i);

/* The host socket of c is readable: peek and send what the guest's window allows. The
 * same afterwards as fast_batch (changed, unsent). */
void fast_pump(struct fast_table *t, struct fast_conn *c, double now);

#endif
