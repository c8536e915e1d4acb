/* The I/O thread's event loop: epoll over file descriptors, each with a callback. */
#ifndef QKVM_UTIL_EVLOOP_H
#define QKVM_UTIL_EVLOOP_H
#include <stdint.h>

struct evloop;
typedef void (*evloop_fn)(void *opaque, uint32_t events);

int evloop_create(struct evloop **out);
void evloop_destroy(struct evloop *l);
/* events are EPOLLIN/EPOLLOUT/...; the callback runs on the loop's thread. 0 or -errno. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque);
int evloop_del(struct evloop *l, int fd);
/* Changes the events watched on fd (0 pauses it). Any thread, unlike add/del. */
int evloop_modify(struct evloop *l, int fd, uint32_t events);
/* Runs until evloop_stop; returns the value given to evloop_stop. */
int evloop_run(struct evloop *l);
/* Thread-safe: any thread (a vCPU, a signal handler) may end the loop. */
void evloop_stop(struct evloop *l, int status);

#endif
