#!/usr/bin/env bash
# -cpu decides what the software CPU's CPUID reports, and what it reports works: the default guest
# under `-accel tcg -cpu max` shows the x86-64-v2 flags in /proc/cpuinfo and runs a static
# -march=x86-64-v2 program (tests/guest/isa-v2.c) to the same digest as the host, and with the
# x86-64-v3 flags (avx avx2 fma f16c xsave) a -march=x86-64-v3 program (tests/guest/isa-v3.c:
# AVX2, FMA, F16C, glibc's AVX2 string functions) in the same boot; under the default qemu64 the
# v2 and v3 flags are absent; models and features qkvm cannot give are refused.
. "$(dirname "$0")/lib.sh"

if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "cpu models under tcg" "this build has no software emulator"
  exit 0
fi

# refusals: one line on stderr, a nonzero exit, before any guest runs
refused() {  # refused NAME EXPECTED-TEXT -cpu SPEC
  local name=$1 want=$2
  shift 2
  run_qkvm 20 -accel tcg "$@" -kernel "$GUESTS/bzimage64.bin"
  if [ "$rc" != 0 ] && [ "$(wc -l <"$TMP/err")" = 1 ] && grep -q -- "$want" "$TMP/err"; then
    pass "$name"
  else
    fail "$name" "rc=$rc stderr: $(head -c 300 "$TMP/err")"
  fi
}
refused "-cpu Haswell under tcg is refused (no RDRAND, LZCNT...)" "model Haswell needs .*rdrand" -cpu Haswell
refused "-cpu host under tcg is refused" "only with -accel kvm" -cpu host
refused "-cpu with an unknown model is refused" "unknown CPU model 'Pentium9'" -cpu Pentium9
refused "-cpu with an unknown feature is refused" "unknown CPU feature 'nosuch'" -cpu qemu64,+nosuch
refused "-cpu +rdrand under tcg is refused" "feature rdrand is not offered" -cpu max,+rdrand
refused "-cpu feat=maybe is refused" "takes on or off" -cpu max,popcnt=maybe
check "-cpu help lists qemu64, max and Nehalem" sh -c "'$QKVM' -cpu help | grep -q 'x86 qemu64' && '$QKVM' -cpu help | grep -q 'x86 max' && '$QKVM' -cpu help | grep -q 'x86 Nehalem'"

if ! grep -qw sse4_2 /proc/cpuinfo; then
  skip "x86-64-v2 program in a guest" "the host has no SSE4.2 to compare against"
  exit 0
fi
if ! cc -O2 -static -march=x86-64-v2 -o "$TMP/isa-v2" "$TOP/tests/guest/isa-v2.c" 2>"$TMP/cc.err"; then
  skip "x86-64-v2 program in a guest" "no static C toolchain: $(head -c 200 "$TMP/cc.err")"
  exit 0
fi
# the program must really hold the v2 instructions, or the guest run below proves nothing
if command -v objdump >/dev/null; then
  ops=$(objdump -d "$TMP/isa-v2" | grep -oE '\b(pshufb|palignr|pcmpistri|crc32q?|pmulld|pblendvb|pcmpgtq|ptest|roundps|haddps|popcnt)\b' | sort -u | tr '\n' ' ')
  expect_eq "isa-v2 holds SSSE3, SSE4.1, SSE4.2, SSE3 and POPCNT instructions" \
    "crc32 haddps palignr pblendvb pcmpgtq pcmpistri pmulld popcnt pshufb ptest roundps " "$ops"
fi
want=$("$TMP/isa-v2")
# the same with BMI1/BMI2 (of x86-64-v3, what the software CPU has of it so far)
bmi=
if grep -qw bmi2 /proc/cpuinfo &&
   cc -O2 -static -march=x86-64-v2 -mbmi -mbmi2 -o "$TMP/isa-bmi" "$TOP/tests/guest/isa-v2.c" 2>/dev/null; then
  bmi=$("$TMP/isa-bmi" | grep '^isa-bmi:')
fi

# x86-64-v3 (AVX2, FMA, F16C, BMI, MOVBE; no LZCNT in it, see below), where the host can run it
v3=
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo &&
   cc -O2 -static -march=x86-64-v3 -o "$TMP/isa-v3" "$TOP/tests/guest/isa-v3.c" 2>"$TMP/cc3.err"; then
  v3=$("$TMP/isa-v3" | grep '^isa-v3:')
  if command -v objdump >/dev/null; then
    ops=$(objdump -d "$TMP/isa-v3" | grep -oE '\b(vpermd|vpsllvd|vpermq|vperm2i128|vpblendd|vpmaskmovd|vfmadd231ps|vfnmadd132pd|vcvtph2ps|vcvtps2ph|vbroadcastss|vblendvps|lzcnt)\b' | sort -u | tr '\n' ' ')
    # LZCNT (also x86-64-v3) is not implemented and this host has none: the program must not
    # hold it, or host and guest would agree only by both running it as BSR
    expect_eq "isa-v3 holds AVX, AVX2, FMA and F16C instructions (and no LZCNT)" \
      "vblendvps vbroadcastss vcvtph2ps vcvtps2ph vfmadd231ps vfnmadd132pd vpblendd vperm2i128 vpermd vpermq vpmaskmovd vpsllvd " "$ops"
  fi
fi

# protection keys and UMIP from user space (tests/guest/pkeys.c); the host need not have them:
# what the program must print under -cpu max is fixed by the SDM and Linux's UMIP emulation
cc -O2 -static -o "$TMP/pkeys" "$TOP/tests/guest/pkeys.c" 2>/dev/null || rm -f "$TMP/pkeys"

if ! "$TOP/guest/build.sh" "$TOP/$B/guest" >"$TMP/guest.log" 2>&1; then
  fail "default guest builds" "$(tail -n 3 "$TMP/guest.log")"
  exit 0
fi
G=$TOP/$B/guest
mkdir "$TMP/root"
(cd "$TMP/root" && zcat "$G/initrd.gz" | cpio -id --quiet && cp "$TMP/isa-v2" bin/isa-v2 && { [ ! -e "$TMP/isa-bmi" ] || cp "$TMP/isa-bmi" bin/isa-bmi; } &&
  { [ -z "$v3" ] || cp "$TMP/isa-v3" bin/isa-v3; } &&
  { [ ! -e "$TMP/pkeys" ] || cp "$TMP/pkeys" bin/pkeys; } &&
  find . | cpio -o -H newc --quiet | gzip -1 >"$TMP/initrd-v2.gz")

# boot_cmd NAME CPU COMMANDS: boots the guest with -cpu CPU (none: the default), types the
# commands, waits for poweroff; the console output is in $TMP/boot.NAME
boot_cmd() {
  local name=$1 cpu=$2 cmds=$3 fifo=$TMP/in.$1 out=$TMP/boot.$1
  mkfifo "$fifo"
  local cpuopt=()
  [ "$cpu" = none ] || cpuopt=(-cpu "$cpu")
  timeout -k 5 300 "$QKVM" -accel tcg "${cpuopt[@]}" -m 512M -kernel "$G/vmlinuz" -initrd "$TMP/initrd-v2.gz" \
    -append "console=ttyS0 panic=-1 quiet" <"$fifo" >"$out" 2>"$out.err" &
  local pid=$! i
  exec 9>"$fifo"
  for i in $(seq 1 300); do
    grep -q 'qkvm-guest: ready' "$out" && break
    kill -0 $pid 2>/dev/null || break
    sleep 1
  done
  if ! grep -q 'qkvm-guest: ready' "$out"; then
    fail "tcg -cpu $cpu: boots to the ready line" "$(tail -n 5 "$out" "$out.err" | tr '\n' ' ' | tail -c 400)"
    exec 9>&-; kill $pid 2>/dev/null; wait $pid 2>/dev/null
    return 1
  fi
  printf '%s; poweroff -f\n' "$cmds" >&9
  wait $pid
  exec 9>&-
}

flags_of() { sed -n 's/^flags=//p' "$TMP/boot.$1" | tr -d '\r' | head -n 1; }
has_flags() {  # has_flags LINE FLAG...: every flag is in the line
  local line=" $1 " f
  shift
  for f; do case "$line" in *" $f "*) ;; *) return 1 ;; esac; done
}

if boot_cmd max max 'echo "flags=$(grep -m1 ^flags /proc/cpuinfo | cut -d: -f2)"; /bin/isa-v2; echo "rc=$?"; [ ! -x /bin/isa-bmi ] || /bin/isa-bmi; [ ! -x /bin/isa-v3 ] || { /bin/isa-v3; echo "rc3=$?"; }; [ ! -x /bin/pkeys ] || /bin/pkeys; dmesg | grep -ciE "oops|bug:|general protection" | sed "s/^/oopses=/"'; then
  f=$(flags_of max)
  check "tcg -cpu max: /proc/cpuinfo shows sse3 ssse3 sse4_1 sse4_2 popcnt cx16 movbe lahf_lm bmi1 bmi2" \
    has_flags "$f" pni ssse3 sse4_1 sse4_2 popcnt cx16 movbe lahf_lm bmi1 bmi2
  expect_eq "tcg -cpu max: the -march=x86-64-v2 program prints the host's result" "$want" \
    "$(grep '^isa-v2:' "$TMP/boot.max" | tr -d '\r' | head -n 1)"
  expect_eq "tcg -cpu max: the program exits 0" 0 "$(sed -n 's/^rc=//p' "$TMP/boot.max" | tr -d '\r' | head -n 1)"
  if [ -n "$bmi" ]; then
    expect_eq "tcg -cpu max: the -mbmi -mbmi2 build prints the host's BMI digest" "$bmi" \
      "$(grep '^isa-bmi:' "$TMP/boot.max" | tr -d '\r' | head -n 1)"
  else
    skip "tcg -cpu max: BMI program" "the host has no BMI2 or the compiler no -mbmi2"
  fi
  check "tcg -cpu max: /proc/cpuinfo shows avx avx2 fma f16c xsave xsaveopt aes pclmulqdq" \
    has_flags "$f" avx avx2 fma f16c xsave xsaveopt aes pclmulqdq
  # Linux switches SMEP, SMAP, UMIP and PKU on when CPUID offers them: the boot, every
  # copy_to/from_user under STAC/CLAC, and the programs above ran with them
  check "tcg -cpu max: /proc/cpuinfo shows smep smap umip pku ospke" has_flags "$f" smep smap umip pku ospke
  # and PCIDs: invpcid_single is Linux's own flag, set once CR4.PCIDE took and INVPCID is there;
  # every CR3 write of the boot and the programs above then carried a PCID
  check "tcg -cpu max: /proc/cpuinfo shows pcid invpcid invpcid_single" has_flags "$f" pcid invpcid invpcid_single
  expect_eq "tcg -cpu max: no oops in the kernel log (SMAP/SMEP faults would be ones)" 0 \
    "$(sed -n 's/^oopses=//p' "$TMP/boot.max" | tr -d '\r' | head -n 1)"
  if [ -e "$TMP/pkeys" ]; then
    expect_eq "tcg -cpu max: protection keys from user space (pkey_alloc, pkey_set, SEGV_PKUERR)" \
      "pkeys: key 1, open: read ok, write ok|pkeys: write-disabled: read ok, write faults (si_code 4, key matches)|pkeys: access-disabled: read faults (si_code 4, key matches)|pkeys: reopened: write ok, value 7" \
      "$(grep '^pkeys:' "$TMP/boot.max" | tr -d '\r' | paste -sd'|')"
    expect_eq "tcg -cpu max: SGDT in user mode under UMIP gets Linux's dummy base" \
      "umip: sgdt base 0xfffffffffffe0000 limit 0" "$(grep '^umip:' "$TMP/boot.max" | tr -d '\r' | head -n 1)"
  else
    skip "tcg -cpu max: protection keys program" "no static toolchain"
  fi
  if [ -n "$v3" ]; then
    expect_eq "tcg -cpu max: the -march=x86-64-v3 program prints the host's result" "$v3" \
      "$(grep '^isa-v3:' "$TMP/boot.max" | tr -d '\r' | head -n 1)"
    expect_eq "tcg -cpu max: the x86-64-v3 program exits 0" 0 "$(sed -n 's/^rc3=//p' "$TMP/boot.max" | tr -d '\r' | head -n 1)"
  else
    skip "tcg -cpu max: x86-64-v3 program" "the host has no AVX2/FMA/F16C or no static toolchain: $(head -c 200 "$TMP/cc3.err" 2>/dev/null)"
  fi
fi

if boot_cmd default none 'echo "flags=$(grep -m1 ^flags /proc/cpuinfo | cut -d: -f2)"'; then
  f=$(flags_of default)
  check "tcg default (qemu64): /proc/cpuinfo shows pni cx16 lahf_lm" has_flags "$f" pni cx16 lahf_lm
  check "tcg default (qemu64): no ssse3, sse4_1, sse4_2, popcnt, xsave, avx or avx2" \
    sh -c "! echo ' $f ' | grep -qwE 'ssse3|sse4_1|sse4_2|popcnt|xsave|avx|avx2'"
  check "tcg default (qemu64): no pcid or invpcid (as QEMU's qemu64)" \
    sh -c "! echo ' $f ' | grep -qwE 'pcid|invpcid'"
fi

if boot_cmd minus 'max,-sse4.2,popcnt=off' 'echo "flags=$(grep -m1 ^flags /proc/cpuinfo | cut -d: -f2)"'; then
  f=$(flags_of minus)
  check "tcg -cpu max,-sse4.2,popcnt=off: sse4_1 stays, sse4_2 and popcnt go" \
    sh -c "echo ' $f ' | grep -qw sse4_1 && ! echo ' $f ' | grep -qwE 'sse4_2|popcnt'"
fi
