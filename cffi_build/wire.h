/*
 * wire.h — pyvde-wirefilter's engine: a thread that reads frames from the two sides,
 * asks wire_core for each one's fate, keeps delayed copies in a timer heap and writes
 * them out when due. Python sets the parameters (under wire_lock) and runs the console.
 */
#ifndef PYVDE_WIRE_H
#define PYVDE_WIRE_H

#include <stdint.h>
#include "wire_core.h"

#define WIRE_LR 0
#define WIRE_RL 1
#define WIRE_MAX_QUEUED (64u << 20)     /* bytes held for delivery, whatever capacity says */

/* Why the engine thread ended (wire_ended). */
#define WIRE_RUNNING 0
#define WIRE_END_LEFT 1      /* the left side closed (or its switch let go) */
#define WIRE_END_RIGHT 2
#define WIRE_STOPPED 3

struct wire_side {
    int rfd, wfd;            /* datagram sockets: one frame each; or a stream's fds (-1: none) */
    int watch;               /* readable or hung up: this side is gone (-1 none) */
    int stream;              /* 1: 2-byte big-endian length + frame records (stdin, dpipe) */
};

struct wire_stats {
    uint64_t queued_frames, queued_bytes;   /* waiting in the timer heap, per direction */
    uint64_t send_errors;                   /* copies the destination refused */
};

struct wire_engine;

struct wire_engine *wire_new(int maxframe, uint64_t seed);
int wire_start(struct wire_engine *w, const struct wire_side *left, const struct wire_side *right);
void wire_stop(struct wire_engine *w);      /* stops and joins the thread */
void wire_free(struct wire_engine *w);
int wire_ended(struct wire_engine *w);      /* WIRE_RUNNING or why it ended */
int wire_event_fd(struct wire_engine *w);   /* readable once the thread has ended */

/* Parameters, state and counters; read or change them between wire_lock and wire_unlock
 * (the thread holds the lock while it decides and delivers; wire_unlock wakes it so a
 * change of timing applies at once). */
struct wire_dir *wire_direction(struct wire_engine *w, int dir);           /* state, counters */
struct wire_params *wire_params(struct wire_engine *w, int node, int dir); /* NULL: no node */
struct wire_markov *wire_markov(struct wire_engine *w);
void wire_markov_restart(struct wire_engine *w);    /* markov_start at the engine's now */
void wire_lock(struct wire_engine *w);
void wire_unlock(struct wire_engine *w);
void wire_get_stats(struct wire_engine *w, int dir, struct wire_stats *out);

/* Markov node changes for markov-debug: the fd is readable when some wait; each call
 * takes up to max of them (from[i] -> to[i]). Takes the lock itself. */
int wire_markov_fd(struct wire_engine *w);
int wire_markov_events(struct wire_engine *w, int32_t *from, int32_t *to, int max);

/* --blink: every copy sent is announced to the datagram socket at path, through fd
 * (owned by the engine from now on), as "<id> <LR|RL|--> <len>"; mono: "--" (a one-way
 * wire). Call before wire_start. */
int wire_set_blink(struct wire_engine *w, int fd, const char *path, const char *id, int mono);

#endif
