#!/usr/bin/env bash
# The PC machine (-M pc, SeaBIOS) through migration to a file and back, live migration over a
# UNIX socket, savevm/loadvm and -loadvm, with tests/guest/pc-state.asm booted from an IDE disk
# beside an ATAPI CD: the guest waits at "pcst: mid N" with a disk READ SECTORS and a CD READ(10)
# half read, fw_cfg halfway through an item and the i8042 with two bytes of a reply queued; the
# machine is saved there and restored, and only then gets the byte that lets the guest read the
# rest and check every word (and write a sector, read one through SeaBIOS's INT 13h from the
# PAM-shadowed BIOS, compare the BIOS area's sum). -kernel on -M pc saved at -S boots to the same
# lines. Then sections of the PC devices, corrupted with their checksums fixed up, are each
# refused by the destination with one line and status 1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/state-vm.bash"

BIOS=/usr/share/seabios/bios-256k.bin
if [ ! -r "$BIOS" ]; then
  skip "PC machine state" "no $BIOS (scripts/deps.sh test installs seabios)"
  exit 0
fi
if ! "$QKVM" -accel help | grep -qx tcg; then
  skip "PC machine state" "this build has no tcg"
  exit 0
fi
EDIT=$TOP/tests/integration/vmstate-edit.py

# the disk: the program, then sectors 64-127 with word i = L << 8 ^ i; the CD: 32 sectors of
# 2048 bytes with word i = S << 10 ^ i ^ 0x5555
python3 - "$GUESTS/pc-state.bin" "$TMP/disk.img" "$TMP/cd.iso" <<'EOF'
import struct, sys
prog = open(sys.argv[1], "rb").read()
disk = bytearray(256 * 512)
disk[:len(prog)] = prog
for l in range(64, 128):
    disk[l * 512:(l + 1) * 512] = b"".join(struct.pack("<H", (l << 8 ^ i) & 0xffff) for i in range(256))
open(sys.argv[2], "wb").write(disk)
open(sys.argv[3], "wb").write(b"".join(struct.pack("<H", (s << 10 ^ i ^ 0x5555) & 0xffff)
                                       for s in range(32) for i in range(1024)))
EOF
"$TOP/$B/qkvm-img" convert -f raw -O qcow2 "$TMP/disk.img" "$TMP/disk.qcow2"

PC=(-M pc -accel tcg -m 64 -nographic -device isa-debug-exit,iobase=0xf4,iosize=4
    -drive "file=$TMP/cd.iso,media=cdrom,if=ide,index=2")
RAW=(-drive "file=$TMP/disk.img,format=raw,if=ide,index=0")
QCOW=(-drive "file=$TMP/disk.qcow2,format=qcow2,if=ide,index=0")

# ---- migration to a file and back ----
vm_start src "${PC[@]}" "${RAW[@]}"
if ! wait_n src "pcst: mid 0" 1; then
  fail "the PC guest boots from IDE and reaches its first turn" "$(lines src | tail -n 3 | tr '\n' '|') $(head -c 300 "$TMP/src.err")"
  vm_stop src
  exit 0
fi
key src
if wait_n src "pcst: ok 0" 1 && wait_n src "pcst: mid 1" 1; then
  pass "the PC guest checks a turn of disk, CD, fw_cfg, i8042 and BIOS-area reads"
else
  fail "the PC guest's first turn" "$(lines src | tail -n 3 | tr '\n' '|')"
fi
if migrate_to src "file:$TMP/state"; then
  pass "-M pc: migrate file: completes (it was refused before)"
else
  fail "-M pc: migrate file: completes" "$(head -c 300 "$TMP/qm")"
fi
vm_stop src
expect_eq "the source never got past mid 1" "" "$(lines src | grep -x 'pcst: ok 1')"

vm_start dst "${PC[@]}" "${RAW[@]}" -incoming "file:$TMP/state"
if wait_running dst; then
  key dst
  if wait_n dst "pcst: ok 1" 1; then
    pass "-incoming file: the half-read disk and CD sectors, fw_cfg and i8042 bytes read on correctly"
  else
    fail "-incoming file: the turn in flight completes" "$(lines dst | tr '\n' '|') $(head -c 300 "$TMP/dst.err")"
  fi
  key dst
  if wait_n dst "pcst: ok 2" 1; then pass "-incoming file: the next turn passes every check"
  else fail "-incoming file: the next turn" "$(lines dst | tr '\n' '|')"; fi
else
  fail "-incoming file: the destination runs" "$(head -c 300 "$TMP/dst.err")"
fi
no_fail dst "-incoming file: no check failed in the guest"
vm_stop dst

# ---- live migration over a UNIX socket, the guest running (spinning on its console) ----
vm_start lsrc "${PC[@]}" "${RAW[@]}"
wait_n lsrc "pcst: mid 0" 1 && key lsrc
if wait_n lsrc "pcst: mid 1" 1; then
  vm_start ldst "${PC[@]}" "${RAW[@]}" -incoming "unix:$TMP/mig.sock"
  for i in $(seq 1 100); do [ -S "$TMP/mig.sock" ] && break; sleep 0.1; done
  if migrate_to lsrc "unix:$TMP/mig.sock" && wait_running ldst; then
    key ldst
    if wait_n ldst "pcst: ok 1" 1 && wait_n ldst "pcst: mid 2" 1; then
      pass "-M pc: live migration over unix: the destination completes the turn in flight"
    else
      fail "-M pc: live migration: the turn in flight" "$(lines ldst | tr '\n' '|') $(head -c 300 "$TMP/ldst.err")"
    fi
  else
    fail "-M pc: live migration over unix: completes" "$(head -c 300 "$TMP/qm") $(head -c 300 "$TMP/ldst.err")"
  fi
  no_fail ldst "live migration: no check failed in the guest"
  vm_stop ldst
else
  fail "the live-migration source reaches mid 1" "$(lines lsrc | tail -n 3 | tr '\n' '|')"
fi
vm_stop lsrc

# ---- savevm / loadvm (qcow2 disk), -loadvm ----
vm_start sv "${PC[@]}" "${QCOW[@]}"
wait_n sv "pcst: mid 0" 1 && key sv
if wait_n sv "pcst: mid 1" 1; then
  expect_eq "-M pc: savevm A at mid 1 (refused before)" "" "$(hmp sv 'savevm A')"
  key sv
  wait_n sv "pcst: mid 2" 1 || fail "after savevm the guest runs on" "$(lines sv | tail -n 2 | tr '\n' '|')"
  expect_eq "-M pc: loadvm A (the devices now mid-way through turn 2's sectors)" "" "$(hmp sv 'loadvm A')"
  key sv
  if wait_n sv "pcst: ok 1" 2 && wait_n sv "pcst: mid 2" 2; then
    pass "loadvm A: turn 1's transfers, restored over turn 2's, read on correctly"
  else
    fail "loadvm A: turn 1 completes again" "$(lines sv | tr '\n' '|')"
  fi
  key sv
  if wait_n sv "pcst: ok 2" 1; then pass "loadvm A: the next turn passes"; else fail "loadvm A: the next turn" "$(lines sv | tail -n 3 | tr '\n' '|')"; fi
else
  fail "the savevm guest reaches mid 1" "$(lines sv | tail -n 3 | tr '\n' '|')"
fi
no_fail sv "savevm/loadvm: no check failed in the guest"
vm_stop sv
if command -v qemu-img >/dev/null; then
  if qemu-img snapshot -l "$TMP/disk.qcow2" | awk '$2 == "A" { found = $3 != "0" } END { exit !found }' &&
     qemu-img check "$TMP/disk.qcow2" >/dev/null 2>&1; then
    pass "qemu-img: snapshot A has its VM state, the image is clean"
  else
    fail "qemu-img snapshot -l / check" "$(qemu-img snapshot -l "$TMP/disk.qcow2" | tr '\n' '|')"
  fi
fi
vm_start lv "${PC[@]}" "${QCOW[@]}" -loadvm A
if wait_running lv; then
  key lv
  if wait_n lv "pcst: ok 1" 1 && wait_n lv "pcst: mid 2" 1; then pass "-loadvm A: a new qkvm resumes turn 1 and passes it"
  else fail "-loadvm A" "$(lines lv | tr '\n' '|') $(head -c 300 "$TMP/lv.err")"; fi
else
  fail "-loadvm A: runs" "$(head -c 300 "$TMP/lv.err")"
fi
no_fail lv "-loadvm: no check failed in the guest"
vm_stop lv

# ---- -kernel on -M pc (SeaBIOS loads it through fw_cfg), saved paused before its first instruction ----
K=(-M pc -accel tcg -m 64 -kernel "$GUESTS/bzimage64.bin" -append "console=ttyS0 pc=1" -nographic)
run_qkvm 60 "${K[@]}"
tr -d '\r' <"$TMP/out" | grep -a '=' >"$TMP/kref"
vm_start k "${K[@]}" -S
migrate_to k "file:$TMP/kstate" || fail "-kernel on -M pc: migrate file: completes" "$(head -c 300 "$TMP/qm")"
vm_stop k
run_qkvm 60 "${K[@]}" -incoming "file:$TMP/kstate"
if grep -q '^cmdline=console=ttyS0 pc=1$' "$TMP/kref" && cmp -s "$TMP/kref" <(tr -d '\r' <"$TMP/out" | grep -a '='); then
  pass "-kernel on -M pc: the restored machine boots the kernel through SeaBIOS to the same lines"
else
  fail "-kernel on -M pc: restored" "rc=$rc $(tr -d '\r' <"$TMP/out" | head -c 200) $(head -c 200 "$TMP/err")"
fi

# ---- corrupt PC device sections: one line, status 1 ----
if [ ! -s "$TMP/state" ]; then
  fail "corrupt sections" "no state file"
  exit 0
fi
python3 "$EDIT" "$TMP/state" /dev/null list >"$TMP/sections"
for s in "i440fx 0" "fw_cfg 0" "i8042 0" "ide 496" "ide 368" "pci 257"; do
  grep -q "^$s " "$TMP/sections" || fail "the stream has section $s" "$(tr '\n' ' ' <"$TMP/sections")"
done
# The edits, made in one run of the editor: NAME|WANT|EDIT. Payload offsets: ide drive[2] x 31
# bytes (atapi.sectors @14), task file 13, xfer @75, lba @81, pos @93, chunk @121.
cat >"$TMP/edits" <<'EOF'
ide: an unknown transfer kind|section 'ide' instance 496: invalid transfer kind|set ide 496 75 09000000
ide: a PIO position past the sector|instance 496: invalid PIO transfer|set ide 496 93 58020000
ide: a transfer past the disk's end|instance 496: invalid PIO transfer's sectors|set ide 496 81 ffff000000000000
ide: another drive set (no master disk)|invalid drives|set ide 496 0 00
ide: a bool holding 2|instance 496: invalid present|set ide 496 0 02
ide: an ATAPI block larger than a sector|section 'ide' instance 368: invalid ATAPI transfer|set ide 368 121 00100000
ide: a CD medium of another size|invalid CD medium|set ide 368 14 ff
i8042: a queue index out of range|section 'i8042' instance 0: invalid output queue index|set i8042 0 32 63000000
fw_cfg: a selected key that does not exist|section 'fw_cfg' instance 0: invalid selected key|set fw_cfg 0 0 ff3f
fw_cfg: an offset past the item|invalid offset|set fw_cfg 0 2 ffffff00
fw_cfg: another file directory|invalid file directory|set fw_cfg 0 14 00000000
i440fx: another BIOS image|section 'i440fx' instance 0: invalid firmware|set i440fx 0 0 00000000
pci 01.1 (PIIX3 IDE): another device's IDs|section 'pci' instance 257: invalid read-only config space|set pci 257 0 ffff
ide: a version from the future|section 'ide' is version 2, newer than this qkvm's 1|version ide 496 2
ide: a section missing|the stream has no section 'ide' instance 368|drop ide 368
unedited, rewritten by the editor|(loads)|version i8042 0 1
EOF
n=0
while IFS='|' read -r name want op; do echo "$TMP/bad$((n++)) $op"; done <"$TMP/edits" | python3 "$EDIT" "$TMP/state" - ||
  fail "vmstate-edit.py edits the stream" "see above"
n=0
while IFS='|' read -r name want op; do
  f=$TMP/bad$((n++))
  if [ "$want" = "(loads)" ]; then
    if cmp -s "$TMP/state" "$f"; then pass "vmstate-edit.py rewrites an unedited stream byte for byte"
    else fail "vmstate-edit.py rewrites an unedited stream byte for byte" "$(cmp "$TMP/state" "$f" 2>&1)"; fi
    continue
  fi
  qkvm_refused "$name" "$want" "${PC[@]}" "${RAW[@]}" -incoming "file:$f"
done <"$TMP/edits"
