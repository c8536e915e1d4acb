#!/usr/bin/env bash
# zlib, zstd and libcrypto are loaded only when an image needs them (src/block/dynlib.c): no
# program links them, a VM without such images never maps them, qkvm-img loads each at first use,
# and a missing one gives a clear reason (once, however many clusters need it) and a nonzero exit.
# libm is linked by no program at all: the software CPU's x87/SSE operations run on the host's own
# instructions (src/accel/emu/fpu_host.c), and its 324 KiB were mapped in every VM.
. "$(dirname "$0")/lib.sh"
QI=$TOP/$B/qkvm-img
QIO=$TOP/$B/qkvm-io
LIBS='libz\.so|libzstd\.so|libcrypto\.so'
NOLIBS="$LIBS|libm\.so"
for src in "$TOP"/src/tools/*.c; do
  p=$(basename "$src" .c)
  if [ ! -x "$TOP/$B/$p" ]; then
    fail "dynlib: $p links none of libm/zlib/zstd/libcrypto" "$B/$p is not built"
  elif readelf -d "$TOP/$B/$p" | grep NEEDED | grep -qE "$NOLIBS"; then
    fail "dynlib: $p links none of libm/zlib/zstd/libcrypto" "$(readelf -d "$TOP/$B/$p" | grep -E "$NOLIBS")"
  else
    pass "dynlib: $p links none of libm/zlib/zstd/libcrypto"
  fi
done
# The dynamic linker lists every object it loads, dlopen'ed ones too.
loaded() { grep -oE "file=[^ ]*(${2:-$LIBS})[^ ]*" "$1" | sed 's/.*file=//; s#.*/##; s/\.so.*//' | sort -u | tr '\n' ' '; }
accel=$(qkvm_accels | head -n 1)
LD_DEBUG=files timeout -k 5 60 "$QKVM" -accel "$accel" -bios "$GUESTS/hello-rom.bin" \
  -device isa-debug-exit,iobase=0xf4,iosize=4 >"$TMP/out" 2>"$TMP/ld" </dev/null
# (a sanitizer runtime needs libm itself: what it pulls in is not qkvm's doing)
grep -E "(needed|loaded) by" "$TMP/ld" | grep -vE "needed by [^ ]*/lib(a|ub|l|t)san\.so" >"$TMP/ld-own"
if grep -q "Hello from real mode" "$TMP/out" && [ -z "$(loaded "$TMP/ld-own" "$NOLIBS")" ]; then
  pass "dynlib: a VM on a ROM ($accel) loads none of them, nor libm"
else
  fail "dynlib: a VM on a ROM ($accel) loads none of them, nor libm" "loaded: $(loaded "$TMP/ld-own" "$NOLIBS") out: $(head -c 100 "$TMP/out")"
fi
command -v qemu-img >/dev/null || { skip dynlib-images "qemu-img not installed"; exit 0; }
cd "$TMP"
head -c 1M /dev/urandom >r.raw; head -c 1M /dev/zero | tr '\0' 'q' >>r.raw
qemu-img convert -q -c -f raw -O qcow2 -o compression_type=zstd r.raw zstd.qcow2
qemu-img convert -q -c -f raw -O qcow2 r.raw zlib.qcow2
# QEMU times PBKDF2 with getrusage, which on a busy machine often reads no CPU time ("Unable to
# get accurate CPU usage"): retry as img-interop.sh does (a failed try is quick), and say so if
# it never takes rather than fail further down as if libcrypto were missing
for try in $(seq 1 60); do
  qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 luks.qcow2 2M 2>qerr && break
done
[ -f luks.qcow2 ] || fail "dynlib: qemu-img makes the LUKS image" "$(head -c 300 qerr)"
sec=(--object secret,id=s0,data=pw --image-opts driver=qcow2,file.filename=luks.qcow2,encrypt.key-secret=s0)
for t in zstd zlib; do
  LD_DEBUG=files "$QI" compare -f qcow2 -F raw $t.qcow2 r.raw >out 2>ld; rc=$?
  want=$([ $t = zlib ] && echo libz || echo libzstd)
  expect_eq "dynlib: qkvm-img compare reads a $t image, loading $want" "0 $want " "$rc $(loaded ld)"
done
LD_DEBUG=files "$QI" info "${sec[@]}" >out 2>ld; rc=$?
expect_eq "dynlib: qkvm-img info opens a LUKS image, loading libcrypto" "0 libcrypto " "$rc $(loaded ld)"
# Hide one library behind an empty file, in a private mount namespace.
sofile() { ldconfig -p | awk -v n="$1" '$1 == n && /x86-64/ { print $NF; exit }'; }
hidden() {  # hidden SONAME CMD...: runs CMD with SONAME unloadable; stderr in err, status in rc
  local so=$1; shift
  unshare -m sh -c 'mount --bind /dev/null "$0" && exec "$@"' "$(sofile "$so")" "$@" >out 2>err
  rc=$?
}
if ! unshare -m true 2>/dev/null || [ -z "$(sofile libzstd.so.1)" ]; then
  skip dynlib-missing "no private mount namespace here"; exit 0
fi
# exit 1..127 and the reason said once, naming the file; a compressed cluster found missing its
# library mid-way also gets the caller's line saying where (so at most two lines)
expect_missing() {  # NAME SONAME MAXLINES
  if [ $rc -gt 0 ] && [ $rc -lt 128 ] && [ "$(wc -l <err)" -le "$3" ] &&
     [ "$(grep -c "$2 is needed for" err)" -eq 1 ]; then
    pass "$1"
  else
    fail "$1" "rc=$rc $(head -c 300 err)"
  fi
}
hidden libzstd.so.1 "$QI" convert -O raw zstd.qcow2 out.raw
expect_missing "dynlib: convert of a zstd image without libzstd: reason said once" libzstd.so.1 2
hidden libz.so.1 "$QI" convert -O raw zlib.qcow2 out.raw
expect_missing "dynlib: convert of a zlib image without libz: reason said once" libz.so.1 2
hidden libcrypto.so.3 "$QI" info "${sec[@]}"
expect_missing "dynlib: info of a LUKS image without libcrypto: one clear line" libcrypto.so.3 1
hidden libzstd.so.1 "$QI" info zstd.qcow2
expect_eq "dynlib: info of a zstd image needs no libzstd" 0 "$rc"
