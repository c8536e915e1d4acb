#!/usr/bin/env bash
# Exact exceptions of the software CPU (src/accel/emu/debug.c, except.c, cpu.c): the multiboot
# guest tests/guest/debug-exc.asm checks single-step, RF pushed by faults, instruction, data and
# general-detect breakpoints with DR6's bits, DR4 under CR4.DE, the STI and MOV SS shadows, NMI
# blocking until IRET, DAS's borrow and an INT through a task gate with IRET back (task.c), 20
# rounds each, and prints what it saw. The expected
# values are the SDM's (vol. 3 ch. 6 and 17); they are checked with the translator (jit=on: the
# code around the checks is translated after the first rounds) and the interpreter alone
# (jit=off), and the two must print the same. QEMU 7.2's TCG, run for information, differs on
# rf_on_fault (it pushes RF clear), gd_* (no general detect) and nmi_count_seen.
. "$(dirname "$0")/lib.sh"

k=$GUESTS/debug-exc.bin
declare -A want=(
  [ss_count]=00000005 [ss_eip_ok]=00000001 [ss_dr6]=ffff4ff0
  [rf_on_fault]=00000001
  [ibp_count_ran]=00000011 [ibp_eip_ok]=00000001 [ibp_dr6]=ffff0ff1
  [wbp_count_eipok]=00000101 [wbp_dr6]=ffff0ff2
  [dr4_is_dr6]=ffff0ff0 [dr4_de_ud]=00000001
  [gd_count_eipok]=00000101 [gd_dr6]=ffff2ff0
  [sti_count_ecx]=00000011 [popf_count_ecx]=00000010 [movss_eipok_count]=00000014
  [nmi_count_seen]=00000021 [das_cf_al]=000001fd
  [task_str_link_nt_ran]=02001811 [task_back_str_nt]=00000180
  [rounds_agree]=00000001
)
declare -A what=(
  [ss_count]="single-step: a #DB after each instruction while TF is set, the POPF clearing it included"
  [ss_eip_ok]="single-step: the #DB's EIP is the next instruction"
  [ss_dr6]="single-step: DR6.BS"
  [rf_on_fault]="a fault (#UD) pushes RFLAGS with RF set"
  [ibp_count_ran]="DR0 instruction breakpoint: one #DB, then RF lets the instruction run once"
  [ibp_eip_ok]="DR0 instruction breakpoint: a fault at the instruction"
  [ibp_dr6]="DR0 instruction breakpoint: DR6.B0"
  [wbp_count_eipok]="DR1 write breakpoint: one trap, after the write, none for a read"
  [wbp_dr6]="DR1 write breakpoint: DR6.B1"
  [dr4_is_dr6]="DR4 reads DR6 with CR4.DE clear (reserved bits read as 1)"
  [dr4_de_ud]="DR4 is #UD with CR4.DE set"
  [gd_count_eipok]="DR7.GD: MOV DR faults once, GD is cleared"
  [gd_dr6]="DR7.GD: DR6.BD"
  [sti_count_ecx]="STI shadow: a pending interrupt is taken after exactly one instruction"
  [popf_count_ecx]="POPF setting IF: a pending interrupt is taken right after it (no shadow)"
  [movss_eipok_count]="MOV SS shadow: single-step's trap waits for the instruction after"
  [nmi_count_seen]="NMI: a second NMI waits for the first one's IRET"
  [das_cf_al]="DAS: the borrow of AL - 6 sets CF"
  [task_str_link_nt_ran]="INT through a task gate: TR is the new TSS, its link the old one, NT set"
  [task_back_str_nt]="IRET with NT: back to the old task, NT clear"
  [rounds_agree]="every round saw the same (interpreted, then translated code around the checks)"
)

for jit in on off; do
  run_qkvm 30 -accel tcg,jit=$jit -nodefaults -display none -serial stdio -device isa-debug-exit -kernel "$k"
  expect_eq "jit=$jit: the guest ran to its end (isa-debug-exit 42)" 85 "$rc"
  for key in "${!want[@]}"; do
    expect_eq "jit=$jit: ${what[$key]} ($key)" "${want[$key]}" "$(outval "$key")"
  done
  tr -d '\r' <"$TMP/out" >"$TMP/out-$jit"
done
if [ -s "$TMP/out-on" ] && cmp -s "$TMP/out-on" "$TMP/out-off"; then
  pass "translated and interpreted runs print the same ($(wc -l <"$TMP/out-on") lines)"
else
  fail "translated and interpreted runs print the same" "$(diff "$TMP/out-off" "$TMP/out-on" | head -n 4 | tr '\n' ' ')"
fi

QEMU=$(command -v qemu-system-x86_64 || true)
if [ -n "$QEMU" ]; then
  timeout 30 "$QEMU" -accel tcg -nodefaults -display none -serial stdio -device isa-debug-exit \
    -kernel "$k" </dev/null 2>/dev/null | tr -d '\r' >"$TMP/qemu"
  diffs=$(for key in "${!want[@]}"; do
    q=$(sed -n "s/^$key=//p" "$TMP/qemu"); [ "$q" = "${want[$key]}" ] || echo "$key=$q"; done | sort | tr '\n' ' ')
  echo "# QEMU's TCG differs from the SDM on: ${diffs:-nothing}"
fi
exit 0
