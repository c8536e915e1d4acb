#include "util/json.h"

void json_init(struct json_writer *w, FILE *f, bool pretty)
{
    *w = (struct json_writer){ .f = f, .pretty = pretty };
}

void json_write_escaped(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_newline(struct json_writer *w)
{
    if (!w->pretty)
        return;
    fputc('\n', w->f);
    for (int i = 0; i < w->depth; i++)
        fputs("    ", w->f);
}

/* Separator, indentation and key before any value. */
static void json_prefix(struct json_writer *w, const char *key)
{
    if (w->depth > 0) {
        if (w->has_items[w->depth])
            fputc(',', w->f);
        w->has_items[w->depth] = true;
        json_newline(w);
    }
    if (key) {
        json_write_escaped(w->f, key);
        fputs(w->pretty ? ": " : ":", w->f);
    }
}

static void json_open(struct json_writer *w, const char *key, char c)
{
    json_prefix(w, key);
    fputc(c, w->f);
    if (w->depth < JSON_MAX_DEPTH - 1)
        w->depth++;
    w->has_items[w->depth] = false;
}

static void json_close(struct json_writer *w, char c)
{
    bool had = w->has_items[w->depth];
    if (w->depth > 0)
        w->depth--;
    if (had)
        json_newline(w);
    fputc(c, w->f);
    if (w->depth == 0 && w->pretty)
        fputc('\n', w->f);
}

void json_object_begin(struct json_writer *w, const char *key) { json_open(w, key, '{'); }
void json_object_end(struct json_writer *w) { json_close(w, '}'); }
void json_array_begin(struct json_writer *w, const char *key) { json_open(w, key, '['); }
void json_array_end(struct json_writer *w) { json_close(w, ']'); }

void json_string(struct json_writer *w, const char *key, const char *val)
{
    json_prefix(w, key);
    json_write_escaped(w->f, val);
}

void json_int(struct json_writer *w, const char *key, int64_t val)
{
    json_prefix(w, key);
    fprintf(w->f, "%lld", (long long)val);
}

void json_uint(struct json_writer *w, const char *key, uint64_t val)
{
    json_prefix(w, key);
    fprintf(w->f, "%llu", (unsigned long long)val);
}

void json_double(struct json_writer *w, const char *key, double val)
{
    json_prefix(w, key);
    fprintf(w->f, "%.17g", val);
}

void json_bool(struct json_writer *w, const char *key, bool val)
{
    json_prefix(w, key);
    fputs(val ? "true" : "false", w->f);
}

void json_null(struct json_writer *w, const char *key)
{
    json_prefix(w, key);
    fputs("null", w->f);
}
