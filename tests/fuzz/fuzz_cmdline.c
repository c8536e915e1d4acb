/* libFuzzer target for qkvm's command line (src/vm/config.c) and the keyval parser under it
 * (src/util/parse.c). The input is NUL-separated arguments. Oracles besides the sanitizers:
 *  - config_parse_args either succeeds with no message or fails with exactly one printable line;
 *  - every string keyval_parse accepts, written back with commas doubled, parses to the same
 *    list (so what qkvm hands a device, -drive's spec inside -device, survives whole).
 *   built by tests/fuzz/build.sh, run by tests/integration/qkvm-fuzz.sh */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/parse.h"
#include "vm/config.h"

#define MAX_ARGS 64

static struct config cfg;

static void append_escaped(char *out, size_t *n, const char *s)
{
    for (; *s; s++) {
        out[(*n)++] = *s;
        if (*s == ',')
            out[(*n)++] = ',';
    }
}

static void check_keyval_round_trip(const char *s, const char *implied)
{
    struct kvlist a, b;
    if (keyval_parse(s, implied, &a))
        return;
    size_t cap = 16;
    for (int i = 0; i < a.n; i++)
        cap += 2 * (strlen(a.items[i].key) + strlen(a.items[i].val)) + 2;
    char *line = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < a.n; i++) {
        if (i)
            line[n++] = ',';
        append_escaped(line, &n, a.items[i].key);
        line[n++] = '=';
        append_escaped(line, &n, a.items[i].val);
    }
    line[n] = 0;
    if (keyval_parse(line, NULL, &b))
        __builtin_trap();
    if (a.n != b.n)
        __builtin_trap();
    for (int i = 0; i < a.n; i++)
        if (strcmp(a.items[i].key, b.items[i].key) || strcmp(a.items[i].val, b.items[i].val))
            __builtin_trap();
    free(line);
    keyval_free(&a);
    keyval_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[MAX_ARGS + 1] = { "qkvm" };
    int argc = 1;
    for (char *p = buf; p < buf + size && argc < MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;

    for (int i = 1; i < argc; i++) {
        check_keyval_round_trip(argv[i], NULL);
        check_keyval_round_trip(argv[i], "type");
    }

    int ret = config_parse_args(&cfg, argc, argv);
    size_t elen = strnlen(cfg.err, sizeof(cfg.err));
    if (elen == sizeof(cfg.err))
        __builtin_trap();   /* not terminated */
    if (ret ? ret > 0 || !elen : elen != 0)
        __builtin_trap();
    for (size_t i = 0; i < elen; i++)
        if ((unsigned char)cfg.err[i] < 0x20)
            __builtin_trap();   /* a message is one line */
    config_free(&cfg);
    free(buf);
    return 0;
}
