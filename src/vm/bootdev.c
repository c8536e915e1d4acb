/* -boot (vm/bootdev.h). The letters are QEMU's (a, b: floppy; c: first hard disk; d: first
 * CD-ROM; n-p: network), and the checks are QEMU's validate_bootdevices and set_boot_dev. */
#include "vm/bootdev.h"

#include "util/parse.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint8_t drive_code(char c)
{
    switch (c) {
    case 'a': case 'b': return 1;
    case 'c': return 2;
    case 'd': return 3;
    case 'n': case 'o': case 'p': return 4;
    default: return 0;
    }
}

static int check_drives(const char *key, const char *s, char *out, char *why, size_t whylen)
{
    size_t n = strlen(s);
    if (!n || n > 3) {
        snprintf(why, whylen, "%s=%s: give one to three boot drives (a floppy, c disk, d CD-ROM, n network)", key, s);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!drive_code(s[i])) {
            snprintf(why, whylen, "%s=%s: invalid boot drive '%c' (a, b floppy, c disk, d CD-ROM, n-p network)", key, s, s[i]);
            return -EINVAL;
        }
        if (memchr(s, s[i], i)) {
            snprintf(why, whylen, "%s=%s: boot drive '%c' given twice", key, s, s[i]);
            return -EINVAL;
        }
    }
    memcpy(out, s, n + 1);
    return 0;
}

int bootdev_parse(const char *arg, struct machine_config *mc, char *why, size_t whylen)
{
    struct kvlist kv;
    if (!*arg)
        return 0;   /* QEMU takes an empty -boot as nothing asked */
    if (keyval_parse(arg, "order", &kv)) {
        snprintf(why, whylen, "not a boot description ([order=]DRIVES,once=DRIVES,menu=on|off)");
        return -EINVAL;
    }
    const char *order = keyval_get(&kv, "order"), *once = keyval_get(&kv, "once"), *menu = keyval_get(&kv, "menu");
    const char *strict = keyval_get(&kv, "strict"), *bad = keyval_unused(&kv);
    bool b, st;
    int ret = 0;
    if (bad) {
        snprintf(why, whylen, "unknown boot property '%s' (order, once, menu, strict)", bad);
        ret = -EINVAL;
    } else if (order && (ret = check_drives("order", order, mc->boot_order, why, whylen))) {
    } else if (once && (ret = check_drives("once", once, mc->boot_once, why, whylen))) {
    } else if (menu && parse_bool(menu, &b)) {
        snprintf(why, whylen, "menu=%s is not on or off", menu);
        ret = -EINVAL;
    } else if (strict && parse_bool(strict, &st)) {
        snprintf(why, whylen, "strict=%s is not on or off", strict);
        ret = -EINVAL;
    } else if (menu) {
        mc->boot_menu = b;
    }
    keyval_free(&kv);
    return ret;
}

void bootdev_cmos(const char *order, uint8_t *r3d, uint8_t *r38)
{
    uint8_t code[3] = { 0 };
    if (!order || !*order)
        order = "cad";
    for (int i = 0; i < 3 && order[i]; i++)
        code[i] = drive_code(order[i]);
    *r3d = (uint8_t)(code[1] << 4 | code[0]);
    *r38 = (uint8_t)(code[2] << 4);
}
