#include "util/clock.h"

#include <time.h>

static uint64_t start_ns;

uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Taken before main: the kernel's own record of exec time has only clock-tick (10 ms) resolution,
 * too coarse for a timeline whose whole budget is a few milliseconds. */
__attribute__((constructor)) static void clock_record_start(void)
{
    start_ns = clock_now_ns();
}

uint64_t clock_since_start_us(void)
{
    return (clock_now_ns() - start_ns) / 1000;
}
