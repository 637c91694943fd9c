/*
 * clock.h — the monotonic clock, as the C modules count time (CLOCK_MONOTONIC).
 */
#ifndef PYVDE_CLOCK_H
#define PYVDE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t monotonic_ms(void)
{
    return monotonic_us() / 1000;   /* the same as tv_sec * 1000 + tv_nsec / 1000000 */
}

#endif
