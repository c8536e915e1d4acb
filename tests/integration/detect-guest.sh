#!/usr/bin/env bash
# qkvm-detect inside a qkvm guest (the default guest, with the binary copied in): it answers
# "qkvm" and names the accelerator, and the guest's DMI shows what -uuid and -smbios passed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/virtio-guest.bash"

if ! vg_accel; then
  skip "qkvm-detect in a qkvm guest" "$VG_WHY"
  exit 0
fi
uuid=5f1c2e3a-9b4d-4e6f-8a7b-0c1d2e3f4a5b
VG_INITRD=$TMP/initrd-detect.gz
vg_initrd "$VG_INITRD" "$TOP/$B/qkvm-detect"
if ! vg_boot detect -uuid $uuid -smbios type=1,product=detect-test,serial=SN-4242; then
  fail "$VG_ACCEL: the guest boots" "$VG_WHY"
  exit 0
fi
expect_eq "$VG_ACCEL: qkvm-detect in the guest says qkvm" qkvm "$(vg_cmd '/host/bin/qkvm-detect')"
expect_eq "$VG_ACCEL: ... and exits 0 (virtualized)" 0 "$(vg_rc)"
expect_eq "$VG_ACCEL: qkvm-detect --vm says qkvm" qkvm "$(vg_cmd '/host/bin/qkvm-detect --vm')"
json=$(vg_cmd '/host/bin/qkvm-detect --json')
check "$VG_ACCEL: --json names the accelerator" grep -q "\"accelerator\": \"$VG_ACCEL\"" <<<"$json"
check "$VG_ACCEL: --json shows the CPUID signature" grep -qE '"value": "(TCGTCGTCGTCG|KVMKVMKVM)"' <<<"$json"
expect_eq "$VG_ACCEL: sys_vendor" qkvm "$(vg_cmd 'cat /sys/class/dmi/id/sys_vendor')"
expect_eq "$VG_ACCEL: product_uuid is -uuid" $uuid "$(vg_cmd 'cat /sys/class/dmi/id/product_uuid')"
expect_eq "$VG_ACCEL: product_name from -smbios" detect-test "$(vg_cmd 'cat /sys/class/dmi/id/product_name')"
expect_eq "$VG_ACCEL: product_serial from -smbios" SN-4242 "$(vg_cmd 'cat /sys/class/dmi/id/product_serial')"
vg_poweroff
expect_eq "$VG_ACCEL: poweroff exits 0" 0 "$VG_EXIT"
