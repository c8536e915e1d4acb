/* The kernel's NBD client driven through generic netlink (linux/nbd-netlink.h), as nbd-client
 * -N does: the socket is negotiated in user space, then NBD_CMD_CONNECT hands it to the
 * kernel with the export's size, block size and transmission flags. The ioctl interface
 * (NBD_SET_SOCK, NBD_DO_IT) would keep a thread blocked in the kernel for the device's life;
 * with netlink the kernel holds the socket itself. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/netlink.h>

#include "nbd/nbd.h"

struct nlbuf {
    uint8_t b[1024];
    size_t len;
};

static struct nlattr *attr_put(struct nlbuf *m, uint16_t type, const void *data, size_t len)
{
    struct nlattr *a = (struct nlattr *)(m->b + m->len);
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    if (len)
        memcpy(m->b + m->len + NLA_HDRLEN, data, len);
    m->len += NLA_ALIGN(a->nla_len);
    return a;
}

static void attr_end(struct nlbuf *m, struct nlattr *nest)
{
    nest->nla_len = (uint16_t)(m->b + m->len - (uint8_t *)nest);
}

static void msg_start(struct nlbuf *m, uint16_t family, uint8_t cmd, uint8_t version)
{
    memset(m, 0, sizeof(*m));
    struct nlmsghdr *h = (struct nlmsghdr *)m->b;
    h->nlmsg_type = family;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    h->nlmsg_seq = 1;
    struct genlmsghdr *g = (struct genlmsghdr *)(m->b + NLMSG_HDRLEN);
    g->cmd = cmd;
    g->version = version;
    m->len = NLMSG_HDRLEN + GENL_HDRLEN;
}

/* Sends m and reads the answers up to the ACK: 0, the kernel's -errno, and for a reply
 * carrying attribute want (u32 or u16), its value in *val. */
static int transact(int fd, struct nlbuf *m, uint16_t want, uint32_t *val)
{
    ((struct nlmsghdr *)m->b)->nlmsg_len = (uint32_t)m->len;
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    if (sendto(fd, m->b, m->len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    uint8_t buf[8192];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0)
            return -errno;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                    return -EPROTO;
                return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
            }
            if (h->nlmsg_type == NLMSG_DONE)
                return 0;
            if (!val || h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN))
                continue;
            uint8_t *p = (uint8_t *)NLMSG_DATA(h) + GENL_HDRLEN;
            uint8_t *end = (uint8_t *)h + h->nlmsg_len;
            while (p + NLA_HDRLEN <= end) {
                struct nlattr *a = (struct nlattr *)p;
                if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end)
                    break;
                size_t dl = a->nla_len - NLA_HDRLEN;
                if ((a->nla_type & NLA_TYPE_MASK) == want && (dl == 2 || dl == 4)) {
                    uint32_t v = 0;
                    if (dl == 2) {
                        uint16_t v16;
                        memcpy(&v16, p + NLA_HDRLEN, 2);
                        v = v16;
                    } else {
                        memcpy(&v, p + NLA_HDRLEN, 4);
                    }
                    *val = v;
                }
                p += NLA_ALIGN(a->nla_len);
            }
        }
    }
}

/* A generic netlink socket and the nbd family's id. */
static int open_family(uint16_t *family, char *err)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, NBD_ERR_MAX, "Cannot open a generic netlink socket: %s", strerror(e));
        return -e;
    }
    struct nlbuf m;
    msg_start(&m, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
    attr_put(&m, CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME, sizeof(NBD_GENL_FAMILY_NAME));
    uint32_t id = 0;
    int r = transact(fd, &m, CTRL_ATTR_FAMILY_ID, &id);
    if (r || !id) {
        close(fd);
        snprintf(err, NBD_ERR_MAX, "The kernel has no nbd netlink family (is the nbd module "
                 "loaded? modprobe nbd)");
        return -ENOENT;
    }
    *family = (uint16_t)id;
    return fd;
}

int nbd_kernel_index(const char *dev)
{
    const char *p = strncmp(dev, "/dev/", 5) ? dev : dev + 5;
    if (strncmp(p, "nbd", 3) || !p[3])
        return -EINVAL;
    char *end;
    long v = strtol(p + 3, &end, 10);
    if (*end || v < 0 || v > 1000000)
        return -EINVAL;
    return (int)v;
}

int nbd_kernel_connect(int index, int sock, const struct nbd_client_info *info, int *out_index,
                       char *err)
{
    uint16_t family;
    int fd = open_family(&family, err);
    if (fd < 0)
        return fd;
    struct nlbuf m;
    msg_start(&m, family, NBD_CMD_CONNECT, NBD_GENL_VERSION);
    if (index >= 0) {
        uint32_t i = (uint32_t)index;
        attr_put(&m, NBD_ATTR_INDEX, &i, 4);
    }
    uint64_t size = info->size;
    uint64_t bsize = info->min_block > 512 && info->min_block <= 4096 ? info->min_block : 512;
    uint64_t flags = info->tflags;
    uint64_t timeout = 0;
    attr_put(&m, NBD_ATTR_SIZE_BYTES, &size, 8);
    attr_put(&m, NBD_ATTR_BLOCK_SIZE_BYTES, &bsize, 8);
    attr_put(&m, NBD_ATTR_SERVER_FLAGS, &flags, 8);
    attr_put(&m, NBD_ATTR_TIMEOUT, &timeout, 8);
    struct nlattr *socks = attr_put(&m, NBD_ATTR_SOCKETS | NLA_F_NESTED, NULL, 0);
    struct nlattr *item = attr_put(&m, NBD_SOCK_ITEM | NLA_F_NESTED, NULL, 0);
    uint32_t sfd = (uint32_t)sock;
    attr_put(&m, NBD_SOCK_FD, &sfd, 4);
    attr_end(&m, item);
    attr_end(&m, socks);
    uint32_t got = (uint32_t)index;
    int r = transact(fd, &m, NBD_ATTR_INDEX, &got);
    close(fd);
    if (r) {
        snprintf(err, NBD_ERR_MAX, "The kernel refused the connection%s: %s",
                 r == -EBUSY ? " (the device is in use)" : "", strerror(-r));
        return r;
    }
    if (out_index)
        *out_index = (int)got;
    return 0;
}

int nbd_kernel_disconnect(int index, char *err)
{
    uint16_t family;
    int fd = open_family(&family, err);
    if (fd < 0)
        return fd;
    struct nlbuf m;
    msg_start(&m, family, NBD_CMD_DISCONNECT, NBD_GENL_VERSION);
    uint32_t i = (uint32_t)index;
    attr_put(&m, NBD_ATTR_INDEX, &i, 4);
    int r = transact(fd, &m, 0, NULL);
    close(fd);
    if (r)
        snprintf(err, NBD_ERR_MAX, "Cannot disconnect /dev/nbd%d: %s", index, strerror(-r));
    return r;
}
