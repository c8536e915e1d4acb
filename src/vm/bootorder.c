/* The PC's "bootorder" fw_cfg file from the devices' bootindex= (vm/bootorder.h). Devices
 * record their path while the machine is built; the file is added once they all exist. */
#include "vm/bootorder.h"

#include "hw/fw_cfg.h"
#include "util/log.h"
#include "util/parse.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BOOTORDER_PATH_MAX 64

struct bootorder {
    int n;
    struct { uint32_t index; char path[BOOTORDER_PATH_MAX]; } e[MACHINE_MAX_DEVICES];
};

int bootorder_take(struct machine *m, struct kvlist *opts, const char *what, const char *path)
{
    const char *s = keyval_get(opts, "bootindex");
    uint64_t v;
    if (!s)
        return 0;
    if (parse_u64(s, 0, INT32_MAX, &v)) {
        log_error("%s: bootindex=%s is not a number from 0 to %d", what, s, INT32_MAX);
        return -EINVAL;
    }
    if (!m->bootorder) {
        if (!(m->bootorder = calloc(1, sizeof(*m->bootorder))))
            return -ENOMEM;
        int ret = machine_add_cleanup(m, free, m->bootorder);
        if (ret)
            return m->bootorder = NULL, ret;
    }
    struct bootorder *b = m->bootorder;
    for (int i = 0; i < b->n; i++)
        if (b->e[i].index == v) {
            log_error("%s: bootindex %s is used by another device already", what, s);
            return -EINVAL;
        }
    if (b->n == MACHINE_MAX_DEVICES || strlen(path) >= BOOTORDER_PATH_MAX)
        return -ENOSPC;
    b->e[b->n].index = (uint32_t)v;
    strcpy(b->e[b->n].path, path);
    b->n++;
    return 0;
}

static int bootorder_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int bootorder_file(struct machine *m, char *buf, size_t n)
{
    struct bootorder *b = m->bootorder;
    if (!b || !b->n)
        return 0;
    qsort(b->e, (size_t)b->n, sizeof(b->e[0]), bootorder_cmp);
    size_t len = 0;
    for (int i = 0; i < b->n; i++) {
        size_t l = strlen(b->e[i].path);
        if (len + l + 1 > n)
            return -ENOSPC;
        memcpy(buf + len, b->e[i].path, l);
        len += l;
        buf[len++] = i + 1 < b->n ? '\n' : '\0';
    }
    return (int)len;
}

/* after every device: the PC's firmware reads the file at its boot */
static int bootorder_init(struct machine *m)
{
    if (!m->fw_cfg || !m->bootorder)
        return 0;
    size_t n = sizeof(m->bootorder->e);
    char *buf = malloc(n);
    if (!buf)
        return -ENOMEM;
    int len = bootorder_file(m, buf, n);
    int ret = len > 0 ? fw_cfg_add_file(m->fw_cfg, "bootorder", buf, (size_t)len) : len;
    free(buf);
    return ret;
}
MACHINE_INIT(bootorder_init, INIT_LATE, NULL)
