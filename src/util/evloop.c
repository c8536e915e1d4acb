#include "util/evloop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct evloop_handler {
    int fd;
    evloop_fn fn;
    void *opaque;
    struct evloop_handler *next;
};

struct evloop {
    int epfd;
    int stopfd;
    atomic_int status;
    atomic_bool claimed;    /* someone decided the status */
    atomic_bool stopping;   /* the status is stored: the loop may return it */
    struct evloop_handler *handlers;
};

int evloop_create(struct evloop **out)
{
    struct evloop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->epfd < 0 || l->stopfd < 0) {
        int err = -errno;
        evloop_destroy(l);
        return err;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stopfd, &ev) < 0) {
        int err = -errno;
        evloop_destroy(l);
        return err;
    }
    *out = l;
    return 0;
}

void evloop_destroy(struct evloop *l)
{
    if (!l)
        return;
    while (l->handlers) {
        struct evloop_handler *h = l->handlers;
        l->handlers = h->next;
        free(h);
    }
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->stopfd >= 0)
        close(l->stopfd);
    free(l);
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque)
{
    struct evloop_handler *h = malloc(sizeof(*h));
    if (!h)
        return -ENOMEM;
    *h = (struct evloop_handler){ fd, fn, opaque, l->handlers };
    struct epoll_event ev = { .events = events, .data.ptr = h };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        free(h);
        return err;
    }
    l->handlers = h;
    return 0;
}

int evloop_del(struct evloop *l, int fd)
{
    for (struct evloop_handler **pp = &l->handlers; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            struct evloop_handler *h = *pp;
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
            *pp = h->next;
            free(h);
            return 0;
        }
    }
    return -ENOENT;
}

int evloop_modify(struct evloop *l, int fd, uint32_t events)
{
    /* The handler list is only read here; it changes only on the loop's own thread. */
    for (struct evloop_handler *h = l->handlers; h; h = h->next) {
        if (h->fd == fd) {
            struct epoll_event ev = { .events = events, .data.ptr = h };
            return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
        }
    }
    return -ENOENT;
}

int evloop_run(struct evloop *l)
{
    struct epoll_event evs[16];
    while (!atomic_load(&l->stopping)) {
        int n = epoll_wait(l->epfd, evs, 16, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n && !atomic_load(&l->stopping); i++) {
            struct evloop_handler *h = evs[i].data.ptr;
            if (h)
                h->fn(h->opaque, evs[i].events);
        }
    }
    return atomic_load(&l->status);
}

void evloop_stop(struct evloop *l, int status)
{
    bool expected = false;
    /* The first reason to stop wins: a poweroff racing a later error keeps its status. */
    if (atomic_compare_exchange_strong(&l->claimed, &expected, true)) {
        atomic_store(&l->status, status);
        atomic_store(&l->stopping, true);
    }
    uint64_t one = 1;
    ssize_t r = write(l->stopfd, &one, sizeof(one));
    (void)r;
}
