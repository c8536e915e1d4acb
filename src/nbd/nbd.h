/* The NBD protocol (NetworkBlockDevice/nbd doc/proto.md): the server that exports a block
 * layer image (qkvm-nbd), the client the block layer's nbd driver sits on, and the sockets
 * both use.
 *
 * Everything here returns 0 (or a count where stated) or a negative errno; calls that can fail
 * for a reason a user must see fill a one-line message in err (NBD_ERR_MAX bytes, may be NULL).
 */
#ifndef QKVM_NBD_NBD_H
#define QKVM_NBD_NBD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"

#define NBD_ERR_MAX 512

/* Handshake */
#define NBD_MAGIC                 0x4e42444d41474943ull  /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC            0x49484156454F5054ull  /* "IHAVEOPT" */
#define NBD_REP_MAGIC             0x3e889045565a9ull
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10

#define NBD_REP_ACK               1u
#define NBD_REP_SERVER            2u
#define NBD_REP_INFO              3u
#define NBD_REP_META_CONTEXT      4u
#define NBD_REP_ERR_UNSUP         0x80000001u
#define NBD_REP_ERR_POLICY        0x80000002u
#define NBD_REP_ERR_INVALID       0x80000003u
#define NBD_REP_ERR_PLATFORM      0x80000004u
#define NBD_REP_ERR_TLS_REQD      0x80000005u
#define NBD_REP_ERR_UNKNOWN       0x80000006u
#define NBD_REP_ERR_SHUTDOWN      0x80000007u
#define NBD_REP_ERR_TOO_BIG       0x80000009u

#define NBD_INFO_EXPORT           0
#define NBD_INFO_NAME             1
#define NBD_INFO_DESCRIPTION      2
#define NBD_INFO_BLOCK_SIZE       3

/* Transmission flags */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* Transmission */
#define NBD_REQUEST_MAGIC          0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu
#define NBD_REQUEST_SIZE           28
#define NBD_SIMPLE_REPLY_SIZE      16
#define NBD_CHUNK_HEADER_SIZE      20

#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

#define NBD_REPLY_FLAG_DONE         (1u << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        32769
#define NBD_REPLY_TYPE_ERROR_OFFSET 32770

#define NBD_STATE_HOLE 1u
#define NBD_STATE_ZERO 2u

#define NBD_EPERM     1
#define NBD_EIO       5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

/* The size constraints this implementation advertises and enforces (proto.md "Size
 * constraints": 32 MiB is the payload every client may assume). */
#define NBD_MIN_BLOCK     1u
#define NBD_PREF_BLOCK    4096u
#define NBD_MAX_PAYLOAD   (32u << 20)
#define NBD_MAX_NAME      4096u      /* export names and descriptions (proto.md strings) */
#define NBD_MAX_OPTION    (64u << 10) /* an option's data; a longer one closes the connection */
#define NBD_DEFAULT_PORT  10809

#define NBD_META_BASE_ALLOCATION  1u  /* context ids this server hands out */
#define NBD_META_ALLOCATION_DEPTH 2u

/* Big-endian helpers for the wire (all NBD fields are network order). */
static inline void nbd_put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline void nbd_put32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static inline void nbd_put64(uint8_t *p, uint64_t v)
{
    nbd_put32(p, v >> 32);
    nbd_put32(p + 4, (uint32_t)v);
}
static inline uint16_t nbd_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t nbd_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t nbd_get64(const uint8_t *p)
{
    return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}

/* ---- The request parser (proto.c): pure functions over bytes, what the fuzz target drives. */
struct nbd_request {
    uint16_t flags, type;
    uint64_t cookie, offset;
    uint32_t len;
};

/* What a connection negotiated, all a request is checked against. */
struct nbd_session {
    uint64_t size;              /* export size */
    uint16_t tflags;            /* transmission flags sent */
    bool structured;            /* NBD_OPT_STRUCTURED_REPLY acknowledged */
    bool meta_base;             /* base:allocation selected */
    bool meta_depth;            /* qemu:allocation-depth selected */
};

/* Decodes a 28-byte request header: 0, or -EPROTO for a bad magic (the connection closes). */
int nbd_request_parse(const uint8_t *hdr, struct nbd_request *rq);
/* Checks a parsed request against the session: 0, an NBD error (NBD_EINVAL, NBD_EPERM, ...)
 * to reply with, or -EPROTO when the stream can no longer be followed (a write payload larger
 * than NBD_MAX_PAYLOAD: its bytes are not read). Offsets and lengths are checked for overflow
 * before any sum. */
int nbd_request_check(const struct nbd_session *s, const struct nbd_request *rq);
/* Maps a negative errno from the block layer to the NBD error a client understands. */
uint32_t nbd_errno_to_nbd(int err);
/* Maps an NBD error from a server to a negative errno. */
int nbd_error_to_errno(uint32_t err);
/* Option data of NBD_OPT_INFO/GO: name (not NUL-terminated) and the info requests.
 * 0 or -EINVAL when the lengths inside do not add up. */
int nbd_parse_info_opt(const uint8_t *data, uint32_t len, const uint8_t **name,
                       uint32_t *namelen, uint16_t *nreq, const uint8_t **reqs);
/* Option data of LIST/SET_META_CONTEXT: calls fn for each query (not NUL-terminated).
 * 0 or -EINVAL when the lengths inside do not add up (fn is then not called at all). */
int nbd_parse_meta_opt(const uint8_t *data, uint32_t len, const uint8_t **name,
                       uint32_t *namelen,
                       void (*fn)(void *opaque, const char *q, uint32_t qlen), void *opaque);

/* ---- The server (server.c). One export of one image; connections served concurrently. */
enum nbd_discard { NBD_DISCARD_IGNORE = 0, NBD_DISCARD_UNMAP };
enum nbd_detect_zeroes { NBD_DZ_OFF = 0, NBD_DZ_ON, NBD_DZ_UNMAP };

struct nbd_export_opts {
    const char *name;           /* "" by default, as qemu-nbd */
    const char *description;    /* NULL: none */
    bool read_only;
    bool allocation_depth;      /* offer qemu:allocation-depth */
    enum nbd_discard discard;
    enum nbd_detect_zeroes detect_zeroes;
    bool multi_conn;            /* advertise NBD_FLAG_CAN_MULTI_CONN (qemu-nbd: when -e > 1) */
    int workers;                /* I/O threads shared by all connections (0: 4) */
    int max_inflight;           /* requests in flight per connection (0: 16) */
};

struct nbd_server;

/* Exports bs (which the server does not own: the caller closes it after nbd_server_free). */
int nbd_server_new(struct block *bs, const struct nbd_export_opts *o, struct nbd_server **out);
/* Serves one connection to its end (handshake, then requests until DISC or EOF), then closes
 * fd. Safe to call from several threads at once. Returns 0 for a clean end, else -errno. */
int nbd_server_serve_fd(struct nbd_server *s, int fd);
/* Accepts on listen_fd, each client on a thread of its own, at most shared at once (others
 * wait in the backlog). Returns after the last client leaves unless persistent, or when
 * nbd_server_stop is called. */
int nbd_server_run(struct nbd_server *s, int listen_fd, int shared, bool persistent);
void nbd_server_stop(struct nbd_server *s);
void nbd_server_free(struct nbd_server *s);

/* ---- Sockets (sock.c). */
/* Listens on addr:port (addr NULL: 0.0.0.0) or a unix socket path: the fd or -errno. */
int nbd_sock_listen_tcp(const char *addr, int port, char *err);
int nbd_sock_listen_unix(const char *path, char *err);
int nbd_sock_connect_tcp(const char *host, int port, char *err);
int nbd_sock_connect_unix(const char *path, char *err);
/* Reads or writes exactly len bytes: 0, -EPIPE at end of stream, or -errno. */
int nbd_read_full(int fd, void *buf, size_t len);
int nbd_write_full(int fd, const void *buf, size_t len);

/* ---- The client (client.c). One connection, requests one at a time under a lock. */
struct nbd_uri {
    char *host;                 /* TCP, or NULL */
    int port;
    char *socket;               /* unix socket path, or NULL */
    char *name;                 /* export name ("" for the default) */
};
/* Parses nbd://HOST[:PORT]/NAME, nbd+unix:///NAME?socket=PATH (and nbd+tcp://). 0 or -EINVAL
 * with the reason in err. */
int nbd_uri_parse(const char *uri, struct nbd_uri *u, char *err);
void nbd_uri_free(struct nbd_uri *u);
/* True for the names nbd_uri_parse takes (how the block layer picks the nbd protocol). */
bool nbd_uri_is_nbd(const char *s);

struct nbd_client;
struct nbd_client_info {
    uint64_t size;
    uint16_t tflags;
    uint32_t min_block, pref_block, max_payload;
    bool structured, meta_base;
};
int nbd_client_open(const struct nbd_uri *u, struct nbd_client **out, char *err);
/* The handshake alone on a connected fd, with simple replies only (what the kernel's client
 * speaks): fixed newstyle, NBD_OPT_GO (EXPORT_NAME for old servers). 0 and info (size,
 * tflags, block sizes) with fd ready for transmission, or -errno, err set and fd closed. */
int nbd_client_handshake_fd(int fd, const char *name, struct nbd_client_info *info, char *err);

/* ---- The kernel's client through the nbd generic netlink family (kernel.c). */
/* Hands the connected, negotiated sock to the kernel as /dev/nbd<index> (index -1: the
 * kernel picks one; *out_index tells which). -ENOENT with a reason when the kernel has no
 * nbd family (the module is not loaded). */
int nbd_kernel_connect(int index, int sock, const struct nbd_client_info *info, int *out_index,
                       char *err);
/* Disconnects /dev/nbd<index>: the kernel sends NBD_CMD_DISC and drops the socket. */
int nbd_kernel_disconnect(int index, char *err);
/* The index N of a path /dev/nbdN, or -EINVAL. */
int nbd_kernel_index(const char *dev);
void nbd_client_close(struct nbd_client *c);
void nbd_client_get_info(struct nbd_client *c, struct nbd_client_info *info);
int nbd_client_pread(struct nbd_client *c, uint64_t off, void *buf, uint32_t len);
int nbd_client_pwrite(struct nbd_client *c, uint64_t off, const void *buf, uint32_t len,
                      bool fua);
int nbd_client_zero(struct nbd_client *c, uint64_t off, uint32_t len, bool may_unmap);
int nbd_client_trim(struct nbd_client *c, uint64_t off, uint32_t len);
int nbd_client_flush(struct nbd_client *c);
/* base:allocation of the run at off: *pnum bytes with NBD_STATE_* *flags. */
int nbd_client_block_status(struct nbd_client *c, uint64_t off, uint32_t len, uint64_t *pnum,
                            uint32_t *flags);

/* What NBD_OPT_LIST + NBD_OPT_INFO tell about a server's exports (qemu-nbd --list). */
struct nbd_export_desc {
    char *name, *description;
    uint64_t size;
    uint16_t tflags;
    uint32_t min_block, pref_block, max_payload;
    char **contexts;
    int ncontexts;
};
int nbd_client_list(const struct nbd_uri *u, struct nbd_export_desc **out, int *n, char *err);
void nbd_export_desc_free(struct nbd_export_desc *d, int n);

#endif
