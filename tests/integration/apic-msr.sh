#!/usr/bin/env bash
# The local APIC as the software CPU reaches it: tests/guest/apic-msr.asm (a multiboot kernel)
# under -cpu qemu64, qemu64,+tsc-deadline and qemu64,+x2apic,+tsc-deadline. The SDM (vol. 3,
# chapter 11) is the oracle for x2APIC mode, IA32_TSC_DEADLINE and the #GPs; QEMU 7.2's TCG for
# what it models as the SDM says (CPUID bits, CPUID.APIC cleared by a disabled APIC, NMIs: one
# latched while the handler runs, taken after IRET). QEMU 7.2 itself has no x2APIC or TSC-deadline
# under TCG and lets a reserved APIC base, EXTD and 0x6e0 through without #GP.
. "$(dirname "$0")/lib.sh"

K=$GUESTS/apic-msr.bin
QEMU=$(command -v qemu-system-x86_64 || true)

# expect_keys LABEL key=value...: each key printed with that value (8 hex digits)
expect_keys() {
  local label=$1 kv; shift
  for kv in "$@"; do
    expect_eq "$label: ${kv%%=*}" "$(printf %08x "${kv#*=}")" "$(outval "${kv%%=*}")"
  done
}

run_qkvm 30 -accel tcg -device isa-debug-exit -cpu qemu64 -kernel "$K" -nographic
expect_eq "qemu64: the guest ran to its exit" 85 "$rc"
expect_keys "qemu64" x2apic_cpuid=0 tscdl_cpuid=0 apic_cpuid_off=0 apic_cpuid_on=1 base_rsvd_gp=1 \
  nmi_count=2 nmi_nested=0 extd_gp=1 tscdl_gp=1
if [ -n "$QEMU" ]; then
  keys="x2apic_cpuid tscdl_cpuid apic_cpuid_off nmi_count nmi_nested"
  for k in $keys; do echo "$k=$(outval $k)"; done >"$TMP/qkvm.kv"
  timeout 30 "$QEMU" -accel tcg -nodefaults -display none -serial stdio -device isa-debug-exit \
    -kernel "$K" </dev/null 2>/dev/null | tr -d '\r' >"$TMP/qemu.out"
  for k in $keys; do echo "$k=$(sed -n "s/^$k=//p" "$TMP/qemu.out" | head -n 1)"; done >"$TMP/qemu.kv"
  if cmp -s "$TMP/qemu.kv" "$TMP/qkvm.kv"; then
    pass "qemu64: CPUID bits, a disabled APIC's CPUID bit and NMI latching as QEMU's TCG"
  else
    fail "qemu64: as QEMU's TCG" "$(diff "$TMP/qemu.kv" "$TMP/qkvm.kv" | tr '\n' ' ')"
  fi
else
  skip "qemu64: as QEMU's TCG" "no qemu-system-x86_64"
fi

run_qkvm 30 -accel tcg -device isa-debug-exit -cpu qemu64,+tsc-deadline -kernel "$K" -nographic
expect_eq "+tsc-deadline: the guest ran to its exit" 85 "$rc"
expect_keys "+tsc-deadline (xAPIC page)" tscdl_cpuid=1 extd_gp=1 tscdl_past=1 tscdl_after=0 tscdl_early=0 tscdl_late=1

run_qkvm 30 -accel tcg -device isa-debug-exit -cpu qemu64,+x2apic,+tsc-deadline -kernel "$K" -nographic
expect_eq "+x2apic,+tsc-deadline: the guest ran to its exit" 85 "$rc"
expect_keys "+x2apic,+tsc-deadline" x2apic_cpuid=1 tscdl_cpuid=1 x2apic_on_gp=0 x2apic_id=0 \
  id_write_gp=1 selfipi_read_gp=1 xapic_page=0xffffffff self_ipi=1 x2apic_to_xapic_gp=1 \
  tscdl_past=1 tscdl_after=0 tscdl_early=0 tscdl_late=1
exit 0
