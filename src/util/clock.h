/* Time for timelines and device clocks. */
#ifndef QKVM_UTIL_CLOCK_H
#define QKVM_UTIL_CLOCK_H
#include <stdint.h>

uint64_t clock_now_ns(void);          /* CLOCK_MONOTONIC */
uint64_t clock_since_start_us(void);  /* microseconds since the process started */

#endif
