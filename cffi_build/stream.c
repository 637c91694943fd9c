/*
 * stream.c — VDE's byte-stream framing (2-byte big-endian length + frame records), for
 * pump.c and wire.c. See stream.h.
 */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int stream_alloc(struct stream_buf *b, size_t cap)
{
    if (!b->data) {
        b->data = malloc(cap);
        if (!b->data)
            return -ENOMEM;
        b->cap = cap;
        b->start = b->end = 0;
    }
    return 0;
}

void stream_free(struct stream_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->start = b->end = 0;
}

static void to_front(struct stream_buf *b)
{
    memmove(b->data, b->data + b->start, b->end - b->start);
    b->end -= b->start;
    b->start = 0;
}

static unsigned head_len(const struct stream_buf *b)
{
    const uint8_t *h = b->data + b->start;
    return ((unsigned)h[0] << 8) | h[1];
}

/* ---------------------------------------------------------------- input */

int stream_fill(struct stream_buf *b, int fd, int maxframe)
{
    if (b->start > 0 && (b->end == b->start || b->end + (size_t)maxframe + 2 > b->cap))
        to_front(b);
    ssize_t r = read(fd, b->data + b->end, b->cap - b->end);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return errno == ECONNRESET || errno == EPIPE ? STREAM_EOF : -errno;
    }
    if (r == 0)
        return STREAM_EOF;
    b->end += (size_t)r;
    return 0;
}

int stream_has_record(const struct stream_buf *b, int maxframe)
{
    if (b->end - b->start < 2)
        return 0;
    unsigned len = head_len(b);
    return len > (unsigned)maxframe || b->end - b->start >= 2 + (size_t)len;
}

int stream_next(struct stream_buf *b, int maxframe, const uint8_t **frame, unsigned *len)
{
    while (b->end - b->start >= 2) {
        unsigned n = head_len(b);
        if (n > (unsigned)maxframe) {
            *len = n;
            return STREAM_BAD;
        }
        if (b->end - b->start < 2 + (size_t)n)
            return 0;   /* the rest of this record comes with a later read */
        b->start += 2;
        if (n == 0)
            continue;   /* a keep-alive */
        *frame = b->data + b->start;
        *len = n;
        b->start += n;
        return STREAM_RECORD;
    }
    return 0;
}

/* ---------------------------------------------------------------- output */

int stream_put(struct stream_buf *b, const void *frame, unsigned len)
{
    if (len > 0xffff)   /* no 16-bit record length can say it */
        return -EMSGSIZE;
    if (b->end + 2 + len > b->cap && b->start > 0)
        to_front(b);
    if (b->end + 2 + len > b->cap)
        return -ENOBUFS;
    uint8_t *o = b->data + b->end;
    o[0] = (uint8_t)(len >> 8);
    o[1] = (uint8_t)len;
    memcpy(o + 2, frame, len);
    b->end += 2 + len;
    return 0;
}

ssize_t stream_flush(struct stream_buf *b, int fd)
{
    ssize_t done = 0;
    while (b->end > b->start) {
        ssize_t r = write(fd, b->data + b->start, b->end - b->start);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        b->start += (size_t)r;
        done += r;
    }
    if (b->start == b->end)
        b->start = b->end = 0;
    return done;
}
