#!/usr/bin/env bash
# libFuzzer on the guest agent's request side (tests/fuzz/fuzz_qga.c): byte streams as a host
# sends them, seeded with tests/fuzz/corpus-qga/. Every seed once, then new inputs for a few
# seconds (two minutes with QKVM_LONG=1). A crash, a sanitizer report, a leak, a reply that is
# not one line of JSON, or a hang fails.
. "$(dirname "$0")/lib.sh"
fuzz_target qga corpus-qga 16384 "src/qga src/util" src/qga/*.c src/util/json.c src/util/base64.c tests/fuzz/fuzz_qga.c -- -lpthread
exit 0
