/* libFuzzer target for what a host sends the guest agent: the stream side (splitting, stray
 * tokens, 0xFF resync, the size bound), the JSON reader and the dispatcher's checks
 * (src/qga/channel.c, dispatch.c). Only commands that change nothing on the machine are enabled
 * (an allow list, -a): the fuzzer must not write files, run programs or freeze disks. Oracles
 * besides the sanitizers: every reply is one line of valid JSON with "return" or "error" (after
 * guest-sync-delimited's 0xFF), and there is a reply for every request the allow list runs.
 *   built and run by tests/integration/qga-fuzz.sh */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qga/qga.h"
#include "util/json.h"

static const char safe[] =
    "guest-sync,guest-sync-delimited,guest-ping,guest-info,guest-get-time,guest-get-host-name,"
    "guest-get-timezone,guest-fsfreeze-status,guest-file-read,guest-file-seek,guest-file-flush,"
    "guest-file-close,guest-exec-status";

static int check_reply(void *opaque, const char *buf, size_t len)
{
    (*(size_t *)opaque)++;
    if (len && (unsigned char)buf[0] == 0xff) {
        buf++;
        len--;
    }
    if (len < 2 || buf[len - 1] != '\n' || memchr(buf, '\n', len - 1))
        abort();
    struct json_value *v = NULL;
    const char *err;
    if (json_parse(buf, len, &v, &err) || (!json_get(v, "return") && !json_get(v, "error")))
        abort();
    json_value_free(v);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qga_state *s = qga_state_new();
    const char *bad;
    if (!s || qga_state_set_rpcs(s, safe, true, &bad))
        abort();
    size_t replies = 0;
    struct qga_stream *st = qga_stream_new(s, check_reply, &replies);
    /* in two pieces, cut where the first byte says: a request split across reads */
    size_t cut = size ? data[0] % (size + 1) : 0;
    qga_stream_feed(st, (const char *)data, cut);
    qga_stream_feed(st, (const char *)data + cut, size - cut);
    qga_stream_end(st);
    qga_stream_free(st);
    qga_state_free(s);
    return 0;
}
