#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int parse_size(const char *s, uint64_t unit, uint64_t *out)
{
    if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    /* Integers go through strtoull so sizes above 2^53 stay exact. */
    unsigned long long iv = strtoull(s, &end, 10);
    double v = (double)iv;
    bool frac = false;
    if (*end == '.') {
        v = strtod(s, &end);
        frac = true;
    }
    if (end == s)
        return -EINVAL;
    if (errno == ERANGE)    /* a number too big for 64 bits is out of range, as in parse_u64 */
        return -ERANGE;
    uint64_t mult = unit;
    if (*end) {
        switch (*end) {
        case 'b': case 'B': mult = 1; break;
        case 'k': case 'K': mult = 1ull << 10; break;
        case 'm': case 'M': mult = 1ull << 20; break;
        case 'g': case 'G': mult = 1ull << 30; break;
        case 't': case 'T': mult = 1ull << 40; break;
        case 'p': case 'P': mult = 1ull << 50; break;
        case 'e': case 'E': mult = 1ull << 60; break;
        default: return -EINVAL;
        }
        end++;
        if (*end == 'i' && end[1] == 'B')   /* "MiB" */
            end += 2;
        else if (*end == 'B' && mult != 1)  /* "MB" as QEMU reads it: binary */
            end++;
        if (*end)
            return -EINVAL;
    }
    if (frac) {
        double r = v * (double)mult;
        if (!(r >= 0) || r >= 18446744073709551616.0)
            return -ERANGE;
        *out = (uint64_t)r;
        return 0;
    }
    if (mult && iv > UINT64_MAX / mult)
        return -ERANGE;
    *out = iv * mult;
    return 0;
}

int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = { "on", "yes", "true", "y", "1" }, *no[] = { "off", "no", "false", "n", "0" };
    for (size_t i = 0; i < 5; i++) {
        if (!strcasecmp(s, yes[i])) { *out = true; return 0; }
        if (!strcasecmp(s, no[i])) { *out = false; return 0; }
    }
    return -EINVAL;
}

static int kv_push(struct kvlist *l, char *key, char *val)
{
    struct keyval *n = realloc(l->items, (size_t)(l->n + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    l->items = n;
    l->items[l->n++] = (struct keyval){ key, val, false };
    return 0;
}

/* Copies one element (up to an unescaped ',') out of *p, turning ",," into ','. */
static char *kv_take(const char **p)
{
    const char *s = *p;
    size_t cap = strlen(s) + 1, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    while (*s) {
        if (*s == ',') {
            if (s[1] == ',') { out[n++] = ','; s += 2; continue; }
            break;
        }
        out[n++] = *s++;
    }
    out[n] = 0;
    *p = *s ? s + 1 : s;
    return out;
}

int keyval_parse(const char *s, const char *implied_key, struct kvlist *out)
{
    *out = (struct kvlist){ 0 };
    bool first = true;
    const char *p = s;
    int ret = 0;
    while (*p || first) {
        char *el = kv_take(&p);
        if (!el) { ret = -ENOMEM; break; }
        char *eq = strchr(el, '=');
        char *key, *val;
        if (!eq) {
            if (!first || !implied_key || !*el) {
                /* "readonly" alone means readonly=on, as QEMU accepts for flags */
                if (!first && *el) {
                    key = el;
                    val = strdup("on");
                } else {
                    free(el);
                    ret = -EINVAL;
                    break;
                }
            } else {
                key = strdup(implied_key);
                val = el;
            }
        } else {
            *eq = 0;
            key = strdup(el);
            val = strdup(eq + 1);
            free(el);
            if (key && !*key) { free(key); free(val); ret = -EINVAL; break; }
        }
        if (!key || !val || kv_push(out, key, val)) {
            free(key);
            free(val);
            ret = -ENOMEM;
            break;
        }
        first = false;
    }
    if (ret)
        keyval_free(out);
    return ret;
}

const char *keyval_get(struct kvlist *l, const char *key)
{
    const char *v = NULL;
    for (int i = 0; i < l->n; i++)   /* the last one wins, as in QEMU */
        if (!strcmp(l->items[i].key, key)) {
            l->items[i].used = true;
            v = l->items[i].val;
        }
    return v;
}

const char *keyval_unused(const struct kvlist *l)
{
    for (int i = 0; i < l->n; i++)
        if (!l->items[i].used)
            return l->items[i].key;
    return NULL;
}

void keyval_free(struct kvlist *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].val);
    }
    free(l->items);
    *l = (struct kvlist){ 0 };
}
