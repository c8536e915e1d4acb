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

/* ---- reader ---- */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct json_reader {
    const char *p, *end;
    const char *err;
    int depth;
};

static void json_skip_ws(struct json_reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static struct json_value *json_new(enum json_type t)
{
    struct json_value *v = calloc(1, sizeof(*v));
    if (v)
        v->type = t;
    return v;
}

void json_value_free(struct json_value *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys)
            free(v->keys[i]);
        if (v->items)
            json_value_free(v->items[i]);
    }
    free(v->keys);
    free(v->items);
    free(v->s);
    free(v);
}

static int json_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* A string literal at r->p (the opening quote); a new NUL-terminated copy, or NULL with r->err. */
static char *json_read_string(struct json_reader *r)
{
    r->p++;
    size_t cap = 16, n = 0;
    char *s = malloc(cap);
    if (!s) {
        r->err = "out of memory";
        return NULL;
    }
    for (;;) {
        if (r->p >= r->end) {
            r->err = "unterminated string";
            break;
        }
        unsigned char c = (unsigned char)*r->p++;
        char tmp[4];
        size_t k = 0;
        if (c == '"') {
            s[n] = 0;
            return s;
        }
        if (c < 0x20) {
            r->err = "control character in a string";
            break;
        }
        if (c != '\\') {
            tmp[k++] = (char)c;
        } else {
            if (r->p >= r->end) {
                r->err = "unterminated string";
                break;
            }
            char e = *r->p++;
            unsigned u;
            switch (e) {
            case '"': case '\\': case '/': tmp[k++] = e; break;
            case 'b': tmp[k++] = '\b'; break;
            case 'f': tmp[k++] = '\f'; break;
            case 'n': tmp[k++] = '\n'; break;
            case 'r': tmp[k++] = '\r'; break;
            case 't': tmp[k++] = '\t'; break;
            case 'u':
                if (r->end - r->p < 4 || json_hex4(r->p, &u)) {
                    r->err = "bad \\u escape";
                    goto fail;
                }
                r->p += 4;
                if (u >= 0xd800 && u < 0xdc00) {   /* a surrogate pair makes one code point */
                    unsigned lo;
                    if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || json_hex4(r->p + 2, &lo) ||
                        lo < 0xdc00 || lo > 0xdfff) {
                        r->err = "lone UTF-16 surrogate";
                        goto fail;
                    }
                    r->p += 6;
                    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                } else if (u >= 0xdc00 && u < 0xe000) {
                    r->err = "lone UTF-16 surrogate";
                    goto fail;
                }
                if (u == 0) {
                    r->err = "\\u0000 in a string";
                    goto fail;
                }
                if (u < 0x80) {
                    tmp[k++] = (char)u;
                } else if (u < 0x800) {
                    tmp[k++] = (char)(0xc0 | (u >> 6));
                    tmp[k++] = (char)(0x80 | (u & 0x3f));
                } else if (u < 0x10000) {
                    tmp[k++] = (char)(0xe0 | (u >> 12));
                    tmp[k++] = (char)(0x80 | ((u >> 6) & 0x3f));
                    tmp[k++] = (char)(0x80 | (u & 0x3f));
                } else {
                    tmp[k++] = (char)(0xf0 | (u >> 18));
                    tmp[k++] = (char)(0x80 | ((u >> 12) & 0x3f));
                    tmp[k++] = (char)(0x80 | ((u >> 6) & 0x3f));
                    tmp[k++] = (char)(0x80 | (u & 0x3f));
                }
                break;
            default:
                r->err = "bad escape in a string";
                goto fail;
            }
        }
        if (n + k + 1 > cap) {
            cap *= 2;
            char *ns = realloc(s, cap);
            if (!ns) {
                r->err = "out of memory";
                break;
            }
            s = ns;
        }
        memcpy(s + n, tmp, k);
        n += k;
    }
fail:
    free(s);
    return NULL;
}

static struct json_value *json_read_value(struct json_reader *r);

/* Appends (key, item) to an array or object; on failure frees both and sets r->err. */
static int json_append(struct json_reader *r, struct json_value *v, char *key, struct json_value *item)
{
    if ((v->n & (v->n - 1)) == 0) {   /* at 0, 1, 2, 4, ...: double the room */
        size_t cap = v->n ? 2 * v->n : 1;
        struct json_value **ni = realloc(v->items, cap * sizeof(*ni));
        if (ni)
            v->items = ni;
        char **nk = ni && v->type == JSON_OBJECT ? realloc(v->keys, cap * sizeof(*nk)) : NULL;
        if (nk)
            v->keys = nk;
        if (!ni || (v->type == JSON_OBJECT && !nk)) {
            free(key);
            json_value_free(item);
            r->err = "out of memory";
            return -ENOMEM;
        }
    }
    if (v->type == JSON_OBJECT)
        v->keys[v->n] = key;
    v->items[v->n++] = item;
    return 0;
}

static struct json_value *json_read_container(struct json_reader *r, bool object)
{
    if (++r->depth > JSON_MAX_DEPTH) {
        r->err = "nested too deeply";
        return NULL;
    }
    r->p++;
    struct json_value *v = json_new(object ? JSON_OBJECT : JSON_ARRAY);
    if (!v) {
        r->err = "out of memory";
        return NULL;
    }
    char close = object ? '}' : ']';
    json_skip_ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        r->depth--;
        return v;
    }
    for (;;) {
        char *key = NULL;
        json_skip_ws(r);
        if (object) {
            if (r->p >= r->end || *r->p != '"') {
                r->err = r->p >= r->end ? "unexpected end of input" : "expected a string key";
                goto fail;
            }
            if (!(key = json_read_string(r)))
                goto fail;
            json_skip_ws(r);
            if (r->p >= r->end || *r->p != ':') {
                free(key);
                r->err = "expected ':'";
                goto fail;
            }
            r->p++;
        }
        struct json_value *item = json_read_value(r);
        if (!item) {
            free(key);
            goto fail;
        }
        if (json_append(r, v, key, item))
            goto fail;
        json_skip_ws(r);
        if (r->p >= r->end) {
            r->err = "unexpected end of input";
            goto fail;
        }
        if (*r->p == close) {
            r->p++;
            r->depth--;
            return v;
        }
        if (*r->p != ',') {
            r->err = object ? "expected ',' or '}'" : "expected ',' or ']'";
            goto fail;
        }
        r->p++;
    }
fail:
    json_value_free(v);
    return NULL;
}

static struct json_value *json_read_number(struct json_reader *r)
{
    const char *s = r->p;
    const char *q = s;
    if (q < r->end && *q == '-')
        q++;
    if (q >= r->end || *q < '0' || *q > '9') {
        r->err = "unexpected character";
        return NULL;
    }
    bool is_int = true;
    if (*q == '0')
        q++;
    else
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    if (q < r->end && *q == '.') {
        is_int = false;
        q++;
        if (q >= r->end || *q < '0' || *q > '9') {
            r->err = "bad number";
            return NULL;
        }
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < r->end && (*q == 'e' || *q == 'E')) {
        is_int = false;
        q++;
        if (q < r->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= r->end || *q < '0' || *q > '9') {
            r->err = "bad number";
            return NULL;
        }
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    }
    char tmp[64];
    size_t n = (size_t)(q - s);
    if (n >= sizeof(tmp)) {
        r->err = "number too long";
        return NULL;
    }
    memcpy(tmp, s, n);
    tmp[n] = 0;
    struct json_value *v = json_new(JSON_NUMBER);
    if (!v) {
        r->err = "out of memory";
        return NULL;
    }
    v->d = strtod(tmp, NULL);
    if (is_int) {
        errno = 0;
        long long i = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v->is_int = true;
            v->i = i;
        }
    }
    r->p = q;
    return v;
}

static struct json_value *json_read_value(struct json_reader *r)
{
    json_skip_ws(r);
    if (r->p >= r->end) {
        r->err = "unexpected end of input";
        return NULL;
    }
    struct json_value *v;
    static const struct { const char *word; enum json_type t; bool b; } words[] = {
        { "null", JSON_NULL, false }, { "true", JSON_BOOL, true }, { "false", JSON_BOOL, false },
    };
    switch (*r->p) {
    case '{': return json_read_container(r, true);
    case '[': return json_read_container(r, false);
    case '"': {
        char *s = json_read_string(r);
        if (!s)
            return NULL;
        if (!(v = json_new(JSON_STRING))) {
            free(s);
            r->err = "out of memory";
            return NULL;
        }
        v->s = s;
        return v;
    }
    default:
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
            size_t n = strlen(words[i].word);
            if ((size_t)(r->end - r->p) >= n && !memcmp(r->p, words[i].word, n)) {
                if (!(v = json_new(words[i].t))) {
                    r->err = "out of memory";
                    return NULL;
                }
                v->b = words[i].b;
                r->p += n;
                return v;
            }
        }
        return json_read_number(r);
    }
}

int json_parse(const char *text, size_t len, struct json_value **out, const char **err)
{
    struct json_reader r = { text, text + len, NULL, 0 };
    struct json_value *v = json_read_value(&r);
    if (v) {
        json_skip_ws(&r);
        if (r.p != r.end) {
            json_value_free(v);
            v = NULL;
            r.err = "trailing characters after the value";
        }
    }
    if (!v) {
        *err = r.err ? r.err : "invalid JSON";
        return strcmp(*err, "out of memory") ? -EINVAL : -ENOMEM;
    }
    *out = v;
    return 0;
}

const struct json_value *json_get(const struct json_value *v, const char *key)
{
    const struct json_value *found = NULL;
    if (v && v->type == JSON_OBJECT)
        for (size_t i = 0; i < v->n; i++)
            if (!strcmp(v->keys[i], key))
                found = v->items[i];
    return found;
}

const char *json_type_name(enum json_type t)
{
    static const char *const names[] = { "null", "boolean", "number", "string", "array", "object" };
    return t <= JSON_OBJECT ? names[t] : "?";
}

void json_write_value(struct json_writer *w, const char *key, const struct json_value *v)
{
    switch (v->type) {
    case JSON_NULL: json_null(w, key); break;
    case JSON_BOOL: json_bool(w, key, v->b); break;
    case JSON_NUMBER:
        if (v->is_int)
            json_int(w, key, v->i);
        else if (isfinite(v->d))
            json_double(w, key, v->d);
        else
            json_null(w, key);
        break;
    case JSON_STRING: json_string(w, key, v->s); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        if (v->type == JSON_ARRAY)
            json_array_begin(w, key);
        else
            json_object_begin(w, key);
        for (size_t i = 0; i < v->n; i++)
            json_write_value(w, v->type == JSON_OBJECT ? v->keys[i] : NULL, v->items[i]);
        if (v->type == JSON_ARRAY)
            json_array_end(w);
        else
            json_object_end(w);
        break;
    }
}

void json_splitter_init(struct json_splitter *sp, size_t max)
{
    *sp = (struct json_splitter){ .max = max };
}

void json_splitter_free(struct json_splitter *sp)
{
    free(sp->buf);
    sp->buf = NULL;
    sp->len = sp->cap = 0;
}

static void json_splitter_reset(struct json_splitter *sp)
{
    sp->len = sp->scanned = 0;
    sp->depth = 0;
    sp->in_string = sp->escape = false;
}

int json_splitter_feed(struct json_splitter *sp, const char *data, size_t len,
                       void (*fn)(void *opaque, const char *text, size_t len), void *opaque)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (sp->depth == 0 && !sp->in_string) {
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
                continue;
            if (c != '{' && c != '[') {
                /* a bare scalar or a stray byte: QMP wants objects, so hand it over alone */
                fn(opaque, &data[i], 1);
                continue;
            }
        }
        if (sp->len == sp->max) {
            json_splitter_reset(sp);
            return -E2BIG;
        }
        if (sp->len == sp->cap) {
            size_t cap = sp->cap ? 2 * sp->cap : 256;
            if (cap > sp->max)
                cap = sp->max;
            char *nb = realloc(sp->buf, cap);
            if (!nb) {
                json_splitter_reset(sp);
                return -ENOMEM;
            }
            sp->buf = nb;
            sp->cap = cap;
        }
        sp->buf[sp->len++] = c;
        if (sp->in_string) {
            if (sp->escape)
                sp->escape = false;
            else if (c == '\\')
                sp->escape = true;
            else if (c == '"')
                sp->in_string = false;
            continue;
        }
        if (c == '"') {
            sp->in_string = true;
        } else if (c == '{' || c == '[') {
            sp->depth++;
        } else if (c == '}' || c == ']') {
            if (--sp->depth == 0) {
                size_t n = sp->len;
                sp->len = 0;
                fn(opaque, sp->buf, n);
            }
        }
    }
    return 0;
}
