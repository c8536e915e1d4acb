/* A streaming JSON writer whose pretty form matches QEMU's (4-space indent, "key": value),
 * so `--output=json` of the tools can be compared with qemu-img's. */
#ifndef QKVM_UTIL_JSON_H
#define QKVM_UTIL_JSON_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

struct json_writer {
    FILE *f;
    bool pretty;
    int depth;
    bool has_items[JSON_MAX_DEPTH];
};

void json_init(struct json_writer *w, FILE *f, bool pretty);
/* key is NULL inside arrays and at the top level. */
void json_object_begin(struct json_writer *w, const char *key);
void json_object_end(struct json_writer *w);
void json_array_begin(struct json_writer *w, const char *key);
void json_array_end(struct json_writer *w);
void json_string(struct json_writer *w, const char *key, const char *val);
void json_int(struct json_writer *w, const char *key, int64_t val);
void json_uint(struct json_writer *w, const char *key, uint64_t val);
void json_double(struct json_writer *w, const char *key, double val);
void json_bool(struct json_writer *w, const char *key, bool val);
void json_null(struct json_writer *w, const char *key);
/* Writes s as a JSON string literal (quotes and escapes included). */
void json_write_escaped(FILE *f, const char *s);

/* ---- the reader: text from a socket or a file into a tree, every byte untrusted ---- */
enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value {
    enum json_type type;
    bool b;
    bool is_int;              /* a number without fraction or exponent that fits int64 */
    int64_t i;
    double d;                 /* every number, integers too */
    char *s;                  /* JSON_STRING: NUL-terminated (a "\u0000" inside is refused) */
    size_t n;                 /* items of an array or object */
    char **keys;              /* JSON_OBJECT: n keys */
    struct json_value **items;
};

/* Parses exactly one value from text[0..len) (whitespace around it allowed). 0 and *out (free
 * with json_value_free), or -EINVAL with *err saying why in a few words, or -ENOMEM. Nesting
 * deeper than JSON_MAX_DEPTH is refused rather than recursed into. */
int json_parse(const char *text, size_t len, struct json_value **out, const char **err);
void json_value_free(struct json_value *v);
/* The member key of object v (the last one when repeated), or NULL; v may be NULL or no object. */
const struct json_value *json_get(const struct json_value *v, const char *key);
const char *json_type_name(enum json_type t);
/* Writes v under key (NULL in arrays and at the top level). */
void json_write_value(struct json_writer *w, const char *key, const struct json_value *v);

/* Splits a byte stream into top-level JSON texts, as QMP reads a socket: braces and brackets
 * are counted outside strings, so a message may span lines or share one. */
struct json_splitter {
    char *buf;
    size_t len, cap, max;     /* max: a longer message is an error, never a bigger buffer */
    int depth;
    bool in_string, escape;
    size_t scanned;
};
void json_splitter_init(struct json_splitter *sp, size_t max);
void json_splitter_free(struct json_splitter *sp);
/* Feeds bytes; for each complete text calls fn(opaque, text, len) and returns 0, -E2BIG when a
 * message grows past max (the splitter is then reset), -ENOMEM. A close bracket with nothing
 * open, or a byte outside any value that is not whitespace, is handed over alone (fn reports the
 * syntax error), so garbage never piles up. */
int json_splitter_feed(struct json_splitter *sp, const char *data, size_t len,
                       void (*fn)(void *opaque, const char *text, size_t len), void *opaque);

#endif
