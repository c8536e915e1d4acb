# qkvm build. Files are found by wildcard: a new .c under src/ needs no edit here.
#   make            build every program into build/
#   make check      install test dependencies, build, run every test
#   make run        install dependencies, build, prepare the default guest, boot it
#   make asan       the same build with AddressSanitizer + UBSan into build-asan/ (SANITIZE=1)
#   make check-long the long runs (fuzzing, big matrices)

CC      ?= cc
NASM    ?= nasm
SANITIZE ?=
ifeq ($(SANITIZE),1)
B       ?= build-asan
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
STATIC_TOOLS =
else
B       ?= build
SANFLAGS =
STATIC_TOOLS = $(B)/qkvm-ga-static
endif

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc -MMD -MP $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
LDLIBS  += -lpthread -lseccomp

LIB_SRCS  := $(shell find src -name '*.c' ! -path 'src/tools/*' | sort)
LIB_OBJS  := $(LIB_SRCS:%.c=$(B)/obj/%.o)
TOOL_SRCS := $(sort $(wildcard src/tools/*.c))
TOOLS     := $(TOOL_SRCS:src/tools/%.c=$(B)/%)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNITS     := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/unit/%)
GUEST_SRCS:= $(sort $(wildcard tests/guest/*.asm))
GUESTS    := $(GUEST_SRCS:tests/guest/%.asm=$(B)/tests/guest/%.bin)
HELPER_SRCS := $(sort $(wildcard tests/helpers/*.c bench/*.c))
HELPERS   := $(patsubst %.c,$(B)/%,$(HELPER_SRCS))

.PHONY: all check check-long run asan deps guest clean tests
all: $(B)/qkvm $(TOOLS) $(GUESTS) $(STATIC_TOOLS)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libqkvm.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# Whole archive: devices and accelerators register themselves from constructors, and nothing
# names them, so a plain static link would leave them out.
WHOLE = -Wl,--whole-archive $(B)/libqkvm.a -Wl,--no-whole-archive
$(B)/%: $(B)/obj/src/tools/%.o $(B)/libqkvm.a
	$(CC) $(LDFLAGS) -o $@ $< $(WHOLE) $(LDLIBS)

$(B)/tests/unit/%: $(B)/obj/tests/unit/%.o $(B)/libqkvm.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(WHOLE) -lcmocka $(LDLIBS)

$(B)/tests/helpers/%: $(B)/obj/tests/helpers/%.o $(B)/libqkvm.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(WHOLE) $(LDLIBS)

$(B)/bench/%: $(B)/obj/bench/%.o $(B)/libqkvm.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(WHOLE) $(LDLIBS)

# static and free of the library: its own size is part of what it measures
$(B)/bench/launch: bench/launch.c
	@mkdir -p $(@D)
	$(CC) -O2 -static -o $@ $<

# the floor qkvm is measured against: a plain program, dynamic on libc alone as qkvm is
$(B)/bench/bare-kvm: bench/bare-kvm.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

# the agent for a guest's initramfs: static, and only the objects it needs (the library's other
# dependencies, seccomp, zstd, openssl, have no part in it)
QGA_OBJS := $(filter $(B)/obj/src/qga/%,$(LIB_OBJS)) $(B)/obj/src/util/json.o $(B)/obj/src/util/base64.o
$(B)/qkvm-ga-static: $(B)/obj/src/tools/qkvm-ga.o $(QGA_OBJS)
	$(CC) $(LDFLAGS) -static -o $@ $^ -lpthread

$(B)/tests/guest/%.bin: tests/guest/%.asm $(wildcard tests/guest/*.inc)
	@mkdir -p $(@D)
	$(NASM) -f bin -I tests/guest/ -o $@ $<

tests: all $(UNITS) $(HELPERS)

deps:
	@scripts/deps.sh

check:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory tests
	@B=$(B) tests/run.sh

check-long:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory tests
	@B=$(B) QKVM_LONG=1 tests/run.sh

asan:
	@$(MAKE) --no-print-directory SANITIZE=1 tests

guest: all
	@guest/build.sh $(B)/guest

run:
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory all
	@guest/build.sh $(B)/guest
	$(B)/qkvm -m 512M -kernel $(B)/guest/vmlinuz -initrd $(B)/guest/initrd.gz -append "console=ttyS0 quiet" -nographic

clean:
	rm -rf build build-asan

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
