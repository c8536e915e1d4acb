#!/usr/bin/env bash
# Non-canonical addresses in 64-bit mode (src/accel/emu/mmu.c noncanonical_ss): the multiboot
# guest tests/guest/noncanon64.asm makes one access at 0x8000000000001000 per case, 24 rounds
# each, and prints vector * 256 + error code of the fault its IST handlers saw (plus 0x10000 for
# a wrong RIP, 0x20000 for an RSP changed before the fault). Through SS (push, pop, CALL, RET,
# ENTER, LEAVE, an RSP- or RBP-based operand, an SS prefix) the SDM (vol. 3 6.15) gives #SS(0),
# 3072; through DS or ES #GP(0), 3328. A near JMP, CALL or RET to a non-canonical address is
# #GP(0) at the branch, before CALL pushes or RET pops (jmp_*, call_*, ret_to_gp). Run with the translator (jit=on: the cases are translated
# after their first rounds, so a slow path of translated code that disagreed shows in _rounds)
# and with the interpreter alone. QEMU 7.2's TCG, run for information, gives #GP(0) for all
# of them.
. "$(dirname "$0")/lib.sh"

k=$GUESTS/noncanon64.bin
ss_cases="push_ss pop_ss call_ss ret_ss rsp_operand_ss rbp_operand_ss rbp_store_ss rbp_add_ss
  ss_prefix_ss leave_ss enter_ss movs_ss_src_ss"
gp_cases="ds_load_gp ds_store_gp push_mem_gp pop_mem_gp stos_ss_prefix_gp
  jmp_reg_gp jmp_mem_gp call_reg_gp call_mem_gp ret_to_gp"

for jit in on off; do
  run_qkvm 30 -accel tcg,jit=$jit -nodefaults -display none -serial stdio -device isa-debug-exit -kernel "$k"
  expect_eq "jit=$jit: the guest ran to its end (isa-debug-exit 42)" 85 "$rc"
  for c in $ss_cases; do
    expect_eq "jit=$jit: $c is #SS(0) at the instruction, RSP unchanged" 3072 "$(outval "$c")"
    expect_eq "jit=$jit: $c the same in every round" 24 "$(outval "${c}_rounds")"
  done
  for c in $gp_cases; do
    expect_eq "jit=$jit: $c is #GP(0) at the instruction, RSP unchanged" 3328 "$(outval "$c")"
    expect_eq "jit=$jit: $c the same in every round" 24 "$(outval "${c}_rounds")"
  done
done

QEMU=$(command -v qemu-system-x86_64 || true)
if [ -n "$QEMU" ]; then
  timeout 30 "$QEMU" -accel tcg -nodefaults -display none -serial stdio -device isa-debug-exit \
    -kernel "$k" </dev/null 2>/dev/null | tr -d '\r' >"$TMP/qemu"
  diffs=$(for c in $ss_cases; do [ "$(sed -n "s/^$c=//p" "$TMP/qemu")" = 3072 ] || echo "$c"; done | tr '\n' ' ')
  echo "# QEMU's TCG differs from the SDM on: ${diffs:-nothing}"
fi
exit 0
