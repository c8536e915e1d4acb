/* Parsing of user-supplied numbers, sizes and QEMU-style "key=value,..." option strings. */
#ifndef QKVM_UTIL_PARSE_H
#define QKVM_UTIL_PARSE_H
#include <stdbool.h>
#include <stdint.h>

/* "512", "512M", "1.5G", "64k": unit is the multiplier for a bare number (1 for bytes, 1<<20 for
 * QEMU's -m). Suffixes k/K, M, G, T, P, E and b/B (bytes). 0 or -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t unit, uint64_t *out);
/* A whole decimal or 0x-hex number within [min, max]. 0 or -EINVAL / -ERANGE. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "on/off/yes/no/true/false". 0 or -EINVAL. */
int parse_bool(const char *s, bool *out);

struct keyval {
    char *key;
    char *val;
    bool used;      /* set by keyval_get, so unknown keys can be reported */
};

struct kvlist {
    int n;
    struct keyval *items;
};

/* Parses "a=b,c=d"; ",," stands for a literal comma inside a value. A first element without '='
 * takes implied_key as its key (QEMU's "-netdev tap,id=n0" → type=tap); without an implied key it
 * is -EINVAL. */
int keyval_parse(const char *s, const char *implied_key, struct kvlist *out);
const char *keyval_get(struct kvlist *l, const char *key);
/* The first key nobody asked for, or NULL: callers report it as an unknown parameter. */
const char *keyval_unused(const struct kvlist *l);
void keyval_free(struct kvlist *l);

#endif
