#include "util/log.h"
int main(int argc, char **argv)
{
    (void)argc;
    log_set_prog(argv[0]);
    return 0;
}
