#!/usr/bin/env bash
# The tiny assembly guests of tests/guest/, under every accelerator this host can run. Each
# checks what the guest printed against what the host passed.
. "$(dirname "$0")/lib.sh"

accels=$(qkvm_accels)
if [ -z "$accels" ]; then
  skip "tiny guests" "no accelerator: /dev/kvm is not usable here and this build has no tcg"
  exit 0
fi
if ! have_kvm; then skip "tiny guests under kvm" "no usable /dev/kvm on this host"; fi

head -c 65536 /dev/urandom >"$TMP/initrd"
want_sum=$(python3 -c "import sys; print(sum(open(sys.argv[1],'rb').read()) & 0xffffffff)" "$TMP/initrd")

for a in $accels; do
  # real mode from the reset vector, output through the UART, exit through isa-debug-exit
  run_qkvm 30 -accel "$a" -bios "$GUESTS/hello-rom.bin" -device isa-debug-exit,iobase=0xf4,iosize=4
  expect_eq "$a: real-mode ROM prints through the UART" "Hello from real mode" "$(tr -d '\r' <"$TMP/out")"
  expect_eq "$a: isa-debug-exit 0 exits with status 1" 1 "$rc"
  # without the debug-exit device the ROM falls through to ACPI poweroff
  run_qkvm 30 -accel "$a" -bios "$GUESTS/hello-rom.bin"
  expect_eq "$a: ROM powers off through the PM1 port, status 0" 0 "$rc"

  for smp in 1 3; do
    run_qkvm 60 -accel "$a" -smp $smp -kernel "$GUESTS/bzimage64.bin" -initrd "$TMP/initrd" \
      -append "console=ttyS0 hello=world  two spaces"
    expect_eq "$a smp=$smp: bzImage entered through the 64-bit entry" 64 "$(outval entry)"
    expect_eq "$a smp=$smp: command line arrives intact" "console=ttyS0 hello=world  two spaces" "$(outval cmdline)"
    expect_eq "$a smp=$smp: e820 entries" 4 "$(outval e820)"
    expect_eq "$a smp=$smp: initrd size" 65536 "$(outval initrd_size)"
    expect_eq "$a smp=$smp: initrd checksum" "$want_sum" "$(outval initrd_sum)"
    expect_eq "$a smp=$smp: MADT lists every vCPU" $smp "$(outval cpus)"
    expect_eq "$a smp=$smp: SMBIOS entry point where dmi_scan looks" 1 "$(outval smbios)"
    expect_eq "$a smp=$smp: DSDT \\_S5 sleep type" 5 "$(outval s5)"
    expect_eq "$a smp=$smp: FADT PM1a control port" 1540 "$(outval pm1a_cnt)"
    expect_eq "$a smp=$smp: ACPI poweroff exits 0" 0 "$rc"
  done

  # the guest starts its APs itself: INIT and SIPI through the local APIC
  run_qkvm 60 -accel "$a" -smp 4 -kernel "$GUESTS/bzimage64.bin" -append "test=smp"
  expect_eq "$a: the guest starts 3 APs with INIT/SIPI" 3 "$(outval aps)"

  # -m above 3 GiB: RAM splits around the PCI hole, one more e820 entry
  run_qkvm 60 -accel "$a" -m 3200M -kernel "$GUESTS/bzimage64.bin"
  expect_eq "$a: RAM above 4 GiB adds an e820 entry" 5 "$(outval e820)"

  run_qkvm 30 -accel "$a" -kernel "$GUESTS/bzimage32.bin" -append "thirty two"
  expect_eq "$a: bzImage without XLF_KERNEL_64 uses the 32-bit entry" 32 "$(outval entry)"
  expect_eq "$a: 32-bit entry gets the command line" "thirty two" "$(outval cmdline)"
  expect_eq "$a: 32-bit guest powers off" 0 "$rc"

  run_qkvm 30 -accel "$a" -kernel "$GUESTS/bzimage64.bin" -append "test=triple"
  expect_eq "$a: triple fault exits nonzero" 1 "$rc"
  check "$a: triple fault is reported" grep -q "triple fault" "$TMP/err"

  run_qkvm 30 -accel "$a" -kernel "$GUESTS/bzimage64.bin" -append "test=reset" -no-reboot
  expect_eq "$a: i8042 reset with -no-reboot exits 0" 0 "$rc"
  expect_eq "$a: ... after one boot" 1 "$(grep -c '^entry=64' "$TMP/out")"
  # without -no-reboot the guest boots again and again until stopped
  run_qkvm 4 -accel "$a" -kernel "$GUESTS/bzimage64.bin" -append "test=reset"
  boots=$(grep -c '^entry=64' "$TMP/out")
  check "$a: i8042 reset reboots the guest ($boots boots)" test "$boots" -ge 2
  expect_eq "$a: a reboot loop ends on SIGTERM" 124 "$rc"

  # unmapped MMIO: reads as ones, writes dropped, said under -d guest_errors, the guest goes on
  run_qkvm 30 -accel "$a" -kernel "$GUESTS/bzimage64.bin" -append "test=mmio" -d guest_errors
  expect_eq "$a: unmapped MMIO reads as all ones" -1 "$(outval mmio_read)"
  expect_eq "$a: the guest goes on after unmapped MMIO" done "$(outval mmio_write)"
  expect_eq "$a: unmapped MMIO read and write reported under -d guest_errors" 2 "$(grep -c 'unmapped MMIO at 0xd0000000' "$TMP/err")"
  expect_eq "$a: guest powers off after unmapped MMIO" 0 "$rc"
done
