/* qkvm-detect: systemd-detect-virt's interface, plus --json evidence and --root for recordings. */
#include "detect/detect.h"
#include "util/log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_VERSION = 256, OPT_PRIVATE_USERS, OPT_LIST, OPT_JSON, OPT_ROOT, OPT_DUMP_CPUID };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [OPTIONS...]\n"
            "Detect execution in a virtualized environment (systemd-detect-virt's interface).\n\n"
            "  -h --help             Show this help\n"
            "     --version          Show the version\n"
            "  -c --container        Only detect whether we are run in a container\n"
            "  -v --vm               Only detect whether we are run in a VM\n"
            "  -r --chroot           Detect whether we are run in a chroot() environment\n"
            "     --private-users    Only detect whether we are running in a user namespace\n"
            "  -q --quiet            Don't output anything, just set return value\n"
            "     --list             List all known and detectable types of virtualization\n"
            "     --json             Print the answer and every piece of evidence as JSON\n"
            "     --root DIR         Read every file under DIR, CPUID from DIR/cpuid\n"
            "     --dump-cpuid       Print this CPU's leaves in DIR/cpuid's format\n\n"
            "Exit status: 0 virtualized, 1 not (\"none\"), 2 error.\n",
            log_prog());
}

int main(int argc, char **argv)
{
    log_set_prog(argv[0]);
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { "container", no_argument, NULL, 'c' },
        { "vm", no_argument, NULL, 'v' },
        { "chroot", no_argument, NULL, 'r' },
        { "private-users", no_argument, NULL, OPT_PRIVATE_USERS },
        { "quiet", no_argument, NULL, 'q' },
        { "list", no_argument, NULL, OPT_LIST },
        { "json", no_argument, NULL, OPT_JSON },
        { "root", required_argument, NULL, OPT_ROOT },
        { "dump-cpuid", no_argument, NULL, OPT_DUMP_CPUID },
        { 0 },
    };
    enum detect_mode mode = DETECT_ANY;
    enum { ACT_DETECT, ACT_CHROOT, ACT_USERNS, ACT_LIST, ACT_DUMP } act = ACT_DETECT;
    bool quiet = false, json = false;
    const char *root = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "hcvrq", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case OPT_VERSION: printf("qkvm-detect 0.1 (systemd-detect-virt 252 rules)\n"); return 0;
        case 'c': mode = DETECT_CONTAINER_ONLY; break;
        case 'v': mode = DETECT_VM_ONLY; break;
        case 'r': act = ACT_CHROOT; break;
        case OPT_PRIVATE_USERS: act = ACT_USERNS; break;
        case 'q': quiet = true; break;
        case OPT_LIST: act = ACT_LIST; break;
        case OPT_JSON: json = true; break;
        case OPT_ROOT: root = optarg; break;
        case OPT_DUMP_CPUID: act = ACT_DUMP; break;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        log_error("takes no arguments");
        return 2;
    }

    switch (act) {
    case ACT_LIST:
        for (int i = 0; i < DETECT_ID_COUNT; i++)
            printf("%s\n", detect_id_name(i));
        return 0;
    case ACT_DUMP: {
        int r = detect_cpuid_dump(stdout);
        if (r) {
            log_error("no CPUID on this machine: %s", strerror(-r));
            return 2;
        }
        return 0;
    }
    case ACT_CHROOT:
    case ACT_USERNS: {
        int r = act == ACT_CHROOT ? detect_in_chroot() : detect_in_userns();
        if (r < 0) {
            log_error("cannot tell: %s", strerror(-r));
            return 2;
        }
        return r ? 0 : 1;
    }
    case ACT_DETECT:
        break;
    }

    struct detect_evidence *e = calloc(1, sizeof(*e));
    if (!e) {
        log_error("out of memory");
        return 2;
    }
    int r = detect_gather(root, e);
    if (r) {
        log_error("cannot read root '%s': %s", root, strerror(-r));
        free(e);
        return 2;
    }
    struct detect_result res;
    detect_decide(e, mode, &res);
    if (json)
        detect_report_json(stdout, e, &res);
    else if (!quiet)
        printf("%s\n", detect_id_name(res.id));
    free(e);
    return res.id != DETECT_NONE ? 0 : 1;
}
