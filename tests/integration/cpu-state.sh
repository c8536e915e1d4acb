#!/usr/bin/env bash
# The vCPU's whole state through migration to a file and back, under tcg here and under KVM
# where /dev/kvm exists: tests/guest/cpu-state64.asm fills general registers, XMM0-15, the x87
# stack and control word, MXCSR, MSRs (STAR..TSC_AUX, FS/GS bases) and DR0-DR3 with its own
# values and waits; the machine is saved there, `info registers` taken on the paused source, and
# a new qkvm restores it paused (-S): its `info registers` must be the source's, and once let go
# the guest checks every value itself (and that its TSC went on). Under KVM the stream holds
# the "kvm-cpu" and "kvm-vm" sections (accel/kvm_state.c), and a vCPU state the source could
# not read is refused with one line.
. "$(dirname "$0")/lib.sh"
SV_PREFIX=cst
. "$(dirname "$0")/state-vm.bash"
EDIT=$TOP/tests/integration/vmstate-edit.py

# round_trip ACCEL: the checks above for one accelerator
round_trip() {
  local a=$1
  local G=(-accel "$a" -m 64 -kernel "$GUESTS/cpu-state64.bin" -nographic)
  vm_start src "${G[@]}"
  if ! wait_n src "cst: ready" 1; then
    fail "$a: the guest sets its CPU state up" "$(tr -d '\r' <"$TMP/src.out" | tail -c 200) $(head -c 300 "$TMP/src.err")"
    vm_stop src
    return
  fi
  if migrate_to src "file:$TMP/state.$a"; then pass "$a: migrate file: completes"
  else fail "$a: migrate file: completes" "$(head -c 300 "$TMP/qm")"; fi
  hmp src 'info registers' >"$TMP/regs.src"
  vm_stop src
  vm_start dst "${G[@]}" -S -incoming "file:$TMP/state.$a"
  if ! wait_status dst "paused|prelaunch"; then
    fail "$a: -incoming file: -S restores the machine paused" "$(head -c 300 "$TMP/dst.err")"
    vm_stop dst
    return
  fi
  hmp dst 'info registers' >"$TMP/regs.dst"
  if grep -q 'RIP=' "$TMP/regs.src" && cmp -s "$TMP/regs.src" "$TMP/regs.dst"; then
    pass "$a: info registers of the restored vCPU are the source's"
  else
    fail "$a: info registers of the restored vCPU are the source's" "$(diff "$TMP/regs.src" "$TMP/regs.dst" | head -n 6 | tr '\n' '|')"
  fi
  qmp dst cont >/dev/null
  key dst
  if wait_n dst "cst: ok" 1; then
    pass "$a: the guest finds its registers, XMM, x87, MXCSR, MSRs and DR0-3 as it left them"
  else
    fail "$a: the guest's own check after the restore" "$(lines dst | tr '\n' '|') $(head -c 300 "$TMP/dst.err")"
  fi
  vm_stop dst
}

if "$QKVM" -accel help | grep -qx tcg; then
  round_trip tcg
else
  skip "tcg: vCPU state round trip" "this build has no tcg"
fi

if ! have_kvm; then
  skip "kvm: the full KVM vCPU state round trip (regs, sregs, XSAVE, XCRs, MSRs, LAPIC, events, debug registers, irqchip, PIT, kvmclock)" \
    "no usable /dev/kvm on this machine"
  exit 0
fi
round_trip kvm
python3 "$EDIT" "$TMP/state.kvm" /dev/null list >"$TMP/sections" 2>&1
if grep -q '^kvm-cpu 0 ' "$TMP/sections" && grep -q '^kvm-vm 0 ' "$TMP/sections"; then
  pass "kvm: the stream holds the kvm-cpu and kvm-vm sections"
else
  fail "kvm: the stream holds the kvm-cpu and kvm-vm sections" "$(tr '\n' ' ' <"$TMP/sections")"
fi
# valid (byte 0 of kvm-cpu) cleared: what a source that could not read its vCPU writes
python3 "$EDIT" "$TMP/state.kvm" "$TMP/bad" set kvm-cpu 0 0 00
run_qkvm 60 -accel kvm -m 64 -kernel "$GUESTS/cpu-state64.bin" -nographic -incoming "file:$TMP/bad"
if [ "$rc" = 1 ] && [ "$(grep -c . "$TMP/err")" = 1 ] && grep -q "section 'kvm-cpu' instance 0: invalid state" "$TMP/err"; then
  pass "kvm: a vCPU state the source could not read is refused with one line"
else
  fail "kvm: a vCPU state the source could not read is refused" "status $rc: $(head -c 300 "$TMP/err")"
fi
