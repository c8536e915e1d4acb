/* libFuzzer target for what a QMP client sends: the stream splitter, the JSON reader and QMP's
 * dispatch (src/util/json.c, src/vm/monitor/qmp.c, commands.c), with no machine behind it (a
 * command that needs one answers with an error). Oracles besides the sanitizers: every text
 * gets exactly one reply, one line, itself valid JSON with "return" or "error".
 *   built by tests/fuzz/build.sh */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "vm/monitor/monitor.h"

static const struct monitor_info info = { 7, 2, 0, "qkvm-fuzz" };
static struct qmp_session session;

static void on_text(void *opaque, const char *text, size_t len)
{
    (void)opaque;
    struct monitor_ctx ctx = { NULL, NULL, &info, NULL };
    char *r = qmp_handle_text(&ctx, &session, text, len);
    if (!r)
        abort();
    size_t n = strlen(r);
    if (n < 2 || strcmp(r + n - 2, "\r\n") || memchr(r, '\n', n - 1))
        abort();
    struct json_value *v = NULL;
    const char *err;
    if (json_parse(r, n, &v, &err) || (!json_get(v, "return") && !json_get(v, "error")))
        abort();
    json_value_free(v);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_splitter sp;
    json_splitter_init(&sp, 4096);
    session.negotiated = size && (data[0] & 1);   /* both sides of the negotiation */
    json_splitter_feed(&sp, (const char *)data, size, on_text, NULL);
    json_splitter_free(&sp);
    return 0;
}
