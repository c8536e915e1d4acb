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

#endif
