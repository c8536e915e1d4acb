#!/usr/bin/env bash
# Exact exceptions of the software CPU (src/accel/emu/debug.c, except.c, cpu.c): the multiboot
# guest tests/guest/debug-exc.asm checks single-step, RF pushed by faults, instruction, data and
# general-detect breakpoints with DR6's bits, DR4 under CR4.DE, the STI and MOV SS shadows, NMI
# blocking until IRET, DAS's borrow, an INT through a task gate with IRET back (task.c) and REP
# string instructions under single-step (a trap per iteration, exec_str.c), 20 rounds each, and
# prints what it saw. The expected
# values are the SDM's (vol. 3 ch. 6 and 17); they are checked with the translator (jit=on: the
# code around the checks is translated after the first rounds) and the interpreter alone
# (jit=off), and the two must print the same. QEMU 7.2's TCG, run for information, differs on
# rf_on_fault and rep_movs_copied_ecx_rf (it pushes RF clear), gd_* (no general detect) and
# nmi_count_seen.
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
  [rep_movs_count_eips]=00000067 [rep_movs_copied_ecx_rf]=00012101
  [repe_cmps_count_eips]=00000067 [repe_cmps_ecx]=00000321 [rep_zero_count_eip]=00000041
  [rep_wbp_count_eip_ecx_done]=00001111
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
  [rep_movs_count_eips]="REP MOVSB under TF: a trap per iteration, RIP on the REP until the last"
  [rep_movs_copied_ecx_rf]="REP MOVSB under TF: the bytes copied, ECX 2, 1, 0 at the traps, RF pushed between iterations"
  [repe_cmps_count_eips]="REPE CMPSB under TF: traps on the REP until ZF ends it"
  [repe_cmps_ecx]="REPE CMPSB under TF: ECX 3, 2, 1 at the traps"
  [rep_zero_count_eip]="REP STOSB with ECX 0 under TF: one trap, at the next instruction"
  [rep_wbp_count_eip_ecx_done]="REP STOSD over a write breakpoint: one trap after that iteration, on the REP, ECX 1; then the rest"
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

# Task switches from user mode with paging (tests/guest/task-user.asm): an INT and a #UD at CPL 3
# through task gates, the TSSs and the GDT on supervisor pages. The switch's writes to them are
# implicit supervisor accesses: the qkvm of the branch point took a #PF on the first one. And a
# far CALL to a 16-bit TSS and back, which it refused (#GP).
declare -A user_want=(
  [user_task_ran_link]=00020028 [user_task_nt_saved_cs]=0001001b [user_back_cs]=001b001b
  [user_task_pf]=00000000 [user_task_unexpected]=00000000
  [task16_str_link_nt]=00380281 [task16_ax_back_tr]=12340028 [task16_saved_ip_ok]=00000001
)
declare -A user_what=(
  [user_task_ran_link]="INT and #UD at CPL 3 through task gates: both switch, back link the user's TSS"
  [user_task_nt_saved_cs]="the new task has NT set; the user's CS is saved in the old TSS"
  [user_back_cs]="IRET with NT returns to user mode both times (past the UD2 the task skipped)"
  [user_task_pf]="no #PF for the TSS and GDT writes of a switch from CPL 3"
  [user_task_unexpected]="no other exception"
  [task16_str_link_nt]="far CALL to a 16-bit TSS (type 1): TR is it, its link the caller's TSS, NT set"
  [task16_ax_back_tr]="the 16-bit TSS's AX loaded; its IRET back to the 32-bit task"
  [task16_saved_ip_ok]="that IRET saved the 16-bit task's IP in the 16-bit layout"
)
for jit in on off; do
  run_qkvm 30 -accel tcg,jit=$jit -nodefaults -display none -serial stdio -device isa-debug-exit \
    -kernel "$GUESTS/task-user.bin"
  expect_eq "jit=$jit: task-user ran to its end (isa-debug-exit 42)" 85 "$rc"
  for key in "${!user_want[@]}"; do
    expect_eq "jit=$jit: ${user_what[$key]} ($key)" "${user_want[$key]}" "$(outval "$key")"
  done
done

QEMU=$(command -v qemu-system-x86_64 || true)
if [ -n "$QEMU" ]; then
  timeout 30 "$QEMU" -accel tcg -nodefaults -display none -serial stdio -device isa-debug-exit \
    -kernel "$k" </dev/null 2>/dev/null | tr -d '\r' >"$TMP/qemu"
  diffs=$(for key in "${!want[@]}"; do
    q=$(sed -n "s/^$key=//p" "$TMP/qemu"); [ "$q" = "${want[$key]}" ] || echo "$key=$q"; done | sort | tr '\n' ' ')
  echo "# QEMU's TCG differs from the SDM on: ${diffs:-nothing}"
  timeout 30 "$QEMU" -accel tcg -nodefaults -display none -serial stdio -device isa-debug-exit \
    -kernel "$GUESTS/task-user.bin" </dev/null 2>/dev/null | tr -d '\r' >"$TMP/qemu"
  diffs=$(for key in "${!user_want[@]}"; do
    q=$(sed -n "s/^$key=//p" "$TMP/qemu"); [ "$q" = "${user_want[$key]}" ] || echo "$key=$q"; done | sort | tr '\n' ' ')
  echo "# QEMU's TCG differs on task-user: ${diffs:-nothing}"
fi
exit 0
