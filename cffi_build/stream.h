/*
 * stream.h — VDE's byte-stream framing ("vdestream": each frame is a record of a 2-byte
 * big-endian length and then the frame), shared by the plugs' pump (pump.c) and
 * wirefilter's engine (wire.c). Internal: not part of any cffi module's API.
 *
 * A struct stream_buf is one direction's byte buffer: bytes read and not yet parsed, or
 * records queued and not yet written. Bytes live in data[start, end). Every fd is used
 * non-blocking: nothing here waits.
 */
#ifndef PYVDE_STREAM_H
#define PYVDE_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STREAM_EOF 1        /* stream_fill: end of file, or the peer reset the connection */
#define STREAM_RECORD 1     /* stream_next: a whole record */
#define STREAM_BAD (-1)     /* stream_next: a length above maxframe (an impossible record) */

struct stream_buf {
    uint8_t *data;
    size_t cap, start, end;
};

/* Allocates cap bytes unless the buffer already has its memory (buffers are kept, with
 * what they hold, across uses). Returns 0 or -ENOMEM. */
int stream_alloc(struct stream_buf *b, size_t cap);
void stream_free(struct stream_buf *b);

static inline int stream_pending(const struct stream_buf *b) { return b->end > b->start; }

/* ---- input */

/* One read() from fd into the buffer, first moving what is left to the front if it is
 * empty or a record of maxframe bytes might not fit behind it. Returns 0 (bytes read, or
 * none yet: EAGAIN, EINTR), STREAM_EOF (end of file, ECONNRESET, EPIPE) or -errno. */
int stream_fill(struct stream_buf *b, int fd, int maxframe);

/* A whole record, or an impossible length, is waiting at the front of the buffer. */
int stream_has_record(const struct stream_buf *b, int maxframe);

/* Takes the next record out of the buffer: STREAM_RECORD with *frame (pointing into the
 * buffer, valid until the next stream_fill) and *len; 0 if no whole record is buffered
 * (the rest comes with a later read); STREAM_BAD with *len the impossible length (the
 * record is left in the buffer). Zero-length records are keep-alives: skipped. */
int stream_next(struct stream_buf *b, int maxframe, const uint8_t **frame, unsigned *len);

/* ---- output */

/* Queues frame as a record, moving what is queued to the front if that makes room.
 * Returns 0, -EMSGSIZE if len does not fit a 16-bit length (nothing queued), or -ENOBUFS
 * if there is no room now (nothing queued: try again after a stream_flush). */
int stream_put(struct stream_buf *b, const void *frame, unsigned len);

/* Writes what is queued until all of it is written or fd takes no more now (EAGAIN, or
 * a write of 0 bytes). Returns the bytes written (0: none) or -errno of a failed write
 * (EPIPE, ECONNRESET: the peer has gone). */
ssize_t stream_flush(struct stream_buf *b, int fd);

#endif
