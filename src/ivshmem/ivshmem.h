/* ivshmem: the server and the peer side of QEMU's ivshmem client-server protocol
 * (docs/ivshmem.md; QEMU's docs/specs/ivshmem-spec.txt). The server hands each peer an id, the
 * shared-memory fd and eventfds; peers ring each other by writing to those eventfds. The protocol is
 * one-way: every message is an 8-byte little-endian signed number, maybe with one fd (SCM_RIGHTS). */
#ifndef QKVM_IVSHMEM_IVSHMEM_H
#define QKVM_IVSHMEM_IVSHMEM_H
#include <stdbool.h>
#include <stdint.h>

#define IVSHMEM_PROTOCOL_VERSION 0
#define IVSHMEM_MAX_VECTORS      64      /* QEMU's contrib server has the same bound */
#define IVSHMEM_MAX_ID           65535   /* the Doorbell register has 16 bits for the peer */
#define IVSHMEM_DEFAULT_MAX_PEERS 256
#define IVSHMEM_ERR_MAX          256

/* ---- messages ---- */

/* Sends one message; fd < 0 sends none. Never blocks: a peer whose socket is full is a peer that
 * does not read, and the caller drops it (-EAGAIN). 0 or -errno. */
int ivshmem_send_msg(int sock, int64_t val, int fd);
/* Receives one message into *val and *fd (-1 when it came without one). Blocks unless sock is
 * non-blocking. 0, -ECONNRESET at end of stream, -EPROTO when more than one fd came (all closed),
 * -EAGAIN, or -errno. */
int ivshmem_recv_msg(int sock, int64_t *val, int *fd);

/* ---- server ---- */

struct ivshmem_server_opts {
    const char *socket_path;
    const char *shm_name;       /* POSIX shm object (shm_open); used when shm_dir is NULL */
    const char *shm_dir;        /* or: an unlinked file in this directory (hugetlbfs, /dev/shm) */
    uint64_t shm_size;
    unsigned vectors;           /* eventfds per peer, 1..IVSHMEM_MAX_VECTORS */
    unsigned max_peers;         /* 0: IVSHMEM_DEFAULT_MAX_PEERS */
    bool verbose;               /* one line on stderr per join and leave */
};

struct ivshmem_server_peer {
    int sock;
    int64_t id;
    int fds[IVSHMEM_MAX_VECTORS];
    bool dead;                  /* failed a send or spoke out of turn: removed at the next sweep */
};

struct ivshmem_server {
    struct ivshmem_server_opts o;
    int listen_fd;
    int shm_fd;
    int64_t next_id;
    unsigned npeers;
    struct ivshmem_server_peer *peers;      /* o.max_peers slots, the first npeers in use */
};

/* Creates the shared memory and listens on the socket. 0 or -errno with a message in err. */
int ivshmem_server_start(struct ivshmem_server *s, const struct ivshmem_server_opts *o, char *err);
/* Waits up to timeout_ms (-1: forever) for a connection or a departure and serves it. 0, -EINTR
 * when a signal came, or -errno. Misbehaving peers are dropped, never reported as errors. */
int ivshmem_server_poll(struct ivshmem_server *s, int timeout_ms);
/* Closes every peer and the socket (unlinking its path); the memory stays for -M. */
void ivshmem_server_close(struct ivshmem_server *s);

/* ---- peer ---- */

struct ivshmem_peer {
    int64_t id;
    unsigned nfds;
    int fds[IVSHMEM_MAX_VECTORS];
};

enum ivshmem_event {
    IVSHMEM_EV_NONE,
    IVSHMEM_EV_ID,              /* our id is known (c->id) */
    IVSHMEM_EV_SHM,             /* the memory fd arrived (c->shm_fd, c->shm_size) */
    IVSHMEM_EV_PEER_VECTOR,     /* peer ev_peer gained vector ev_vector (maybe ourselves) */
    IVSHMEM_EV_PEER_GONE,       /* peer ev_peer left; its fds are closed */
};

struct ivshmem_client {
    int sock;
    unsigned vectors;           /* how many vectors we use: extra fds from the server are closed */
    int state;                  /* which message of the handshake comes next */
    int64_t id;                 /* -1 until known */
    int shm_fd;                 /* -1 until known */
    uint64_t shm_size;
    struct ivshmem_peer self;   /* fds to read our own interrupts from */
    unsigned npeers;
    struct ivshmem_peer *peers; /* the others, in order of arrival */
    int64_t ev_peer;            /* what the last event was about */
    unsigned ev_vector;
    char err[IVSHMEM_ERR_MAX];
};

/* Starts the peer side over an already connected socket (the client takes it). */
void ivshmem_client_init(struct ivshmem_client *c, int sock, unsigned vectors);
/* Connects to the server's socket. 0 or -errno. */
int ivshmem_client_connect(struct ivshmem_client *c, const char *path, unsigned vectors);
/* Reads one message and applies it; *ev says what changed. 0, -EAGAIN (non-blocking socket, nothing
 * there), -ECONNRESET (server gone) or -EPROTO with a message in c->err: the server broke the
 * protocol, and the caller should stop reading it. */
int ivshmem_client_recv(struct ivshmem_client *c, enum ivshmem_event *ev);
/* Reads messages until our id and the memory are known (blocking). 0 or like ivshmem_client_recv. */
int ivshmem_client_handshake(struct ivshmem_client *c);
struct ivshmem_peer *ivshmem_client_find_peer(struct ivshmem_client *c, int64_t id);
/* Rings vector of peer: 0, -ENOENT (no such peer or vector) or -errno. */
int ivshmem_client_notify(struct ivshmem_client *c, int64_t peer, unsigned vector);
void ivshmem_client_close(struct ivshmem_client *c);

#endif
