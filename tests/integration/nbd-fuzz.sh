#!/usr/bin/env bash
# libFuzzer on the NBD server (tests/fuzz/fuzz_nbd.c): whole client streams (handshake,
# options, requests) over a socketpair, seeded with tests/fuzz/corpus-nbd/. Every seed once,
# then new inputs for a few seconds (two minutes with QKVM_LONG=1). A crash, a sanitizer
# report, a leak or a hang fails.
. "$(dirname "$0")/lib.sh"
fuzz_target nbd corpus-nbd 65536 "src/nbd src/block" src/block/*.c src/block/qcow2/*.c src/util/log.c src/util/clock.c src/util/parse.c \
  src/nbd/*.c tests/fuzz/fuzz_nbd.c -- -lpthread -lm
exit 0
