#!/usr/bin/env bash
# qkvm's SMBIOS tables judged by Debian's dmidecode: tests/helpers/smbios-dump writes them in
# dmidecode's --dump-bin layout, and `dmidecode --from-dump` must decode them without a complaint
# and show what -uuid, -smbios, -smp and -m asked for.
source "$(dirname "$0")/lib.sh"
DUMP=$TOP/$B/tests/helpers/smbios-dump

command -v dmidecode >/dev/null || "$TOP/scripts/deps.sh" test >/dev/null 2>&1 || true
if ! command -v dmidecode >/dev/null; then
    skip "detect-smbios: dmidecode" "dmidecode not installed"
    exit 0
fi

UUID=6e1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b
dmi() { dmidecode --from-dump "$TMP/t.bin" "$@" 2>>"$TMP/err"; }

for ep in 64 32; do
    : >"$TMP/err"
    legacy=; [ $ep = 32 ] && legacy=-legacy
    "$DUMP" "$TMP/t.bin" -m 3G -smp 4 -uuid $UUID $legacy \
        -smbios "type=1,manufacturer=Acme,,Inc.,product=Widget 9,serial=SN-42,version=2.1" \
        -smbios "type=0,vendor=qkvm,version=7.7" -smbios "type=3,asset=A-1"
    expect_eq "detect-smbios($ep): sys_vendor" "Acme,Inc." "$(dmi -s system-manufacturer)"
    expect_eq "detect-smbios($ep): product_name" "Widget 9" "$(dmi -s system-product-name)"
    expect_eq "detect-smbios($ep): product_serial" "SN-42" "$(dmi -s system-serial-number)"
    expect_eq "detect-smbios($ep): product_version" "2.1" "$(dmi -s system-version)"
    expect_eq "detect-smbios($ep): product_uuid" "$UUID" "$(dmi -s system-uuid)"
    expect_eq "detect-smbios($ep): bios" "qkvm 7.7" "$(dmi -s bios-vendor) $(dmi -s bios-version)"
    expect_eq "detect-smbios($ep): chassis asset" "A-1" "$(dmi -s chassis-asset-tag)"
    expect_eq "detect-smbios($ep): processors" 4 "$(dmi -t 4 | grep -c 'Processor Information')"
    expect_eq "detect-smbios($ep): memory" "Size: 3 GB" "$(dmi -t 17 | grep -o 'Size: .*')"
    expect_eq "detect-smbios($ep): virtual machine bit" 1 "$(dmi -t 0 | grep -c 'System is a virtual machine')"
    dmi >"$TMP/all.txt"
    expect_eq "detect-smbios($ep): every type" "0 1 3 4 16 17 19 32 127" \
        "$(grep -o 'DMI type [0-9]*' "$TMP/all.txt" | awk '{print $3}' | sort -un | tr '\n' ' ' | sed 's/ $//')"
    expect_eq "detect-smbios($ep): dmidecode complaints" "" \
        "$(grep -viE '^# dmidecode|^Reading SMBIOS' "$TMP/err" | head -3)"
done

# Defaults: qkvm's identity, and no UUID at all (Linux then shows no product_uuid).
"$DUMP" "$TMP/t.bin"
expect_eq "detect-smbios: default sys_vendor" qkvm "$(dmi -s system-manufacturer)"
expect_eq "detect-smbios: default product_name" "qkvm Virtual Machine" "$(dmi -s system-product-name)"

# Big: 5 TiB in 16 GiB DIMMs, extended fields, 256 CPUs.
"$DUMP" "$TMP/t.bin" -m 5T -smp 256
expect_eq "detect-smbios: 5T capacity" "Maximum Capacity: 5 TB" "$(dmi -t 16 | grep -o 'Maximum Capacity: .*')"
expect_eq "detect-smbios: 5T in DIMMs" 320 "$(dmi -t 17 | grep -c 'Size: 16 GB')"
expect_eq "detect-smbios: 256 processors" 256 "$(dmi -t 4 | grep -c 'Processor Information')"

# Bad options: one line, non-zero.
"$DUMP" "$TMP/t.bin" -smbios type=1,colour=blue 2>"$TMP/e"; rc=$?
expect_eq "detect-smbios: unknown key refused" "1 1" "$([ $rc -ne 0 ]; echo $(( ! $? ))) $(grep -c colour "$TMP/e")"
"$DUMP" "$TMP/t.bin" -uuid not-a-uuid 2>/dev/null
expect_eq "detect-smbios: bad uuid refused" 2 $?
