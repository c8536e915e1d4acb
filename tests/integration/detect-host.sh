#!/usr/bin/env bash
# qkvm-detect on this machine agrees with systemd-detect-virt and virt-what (Debian's), and its
# --json names the evidence behind the answer.
#
# The two oracles differ in shape: systemd-detect-virt prints one identifier, the container when
# there is one and the VM otherwise, while virt-what prints every layer it sees, outermost first
# ("kvm", then "docker"). qkvm-detect follows systemd-detect-virt (same interface, same names, same
# precedence); virt-what is checked layer by layer against --vm and --container.
source "$(dirname "$0")/lib.sh"
DETECT=$TOP/$B/qkvm-detect

if ! command -v systemd-detect-virt >/dev/null || ! command -v virt-what >/dev/null; then
    "$TOP/scripts/deps.sh" test >/dev/null 2>&1 || true
fi
have_sdv=1; command -v systemd-detect-virt >/dev/null || have_sdv=0
have_vw=1; command -v virt-what >/dev/null || have_vw=0

# A qkvm guest is kvm or qemu to the others: they know no "qkvm".
as_systemd() {  # as_systemd ID ACCEL
    if [ "$1" = qkvm ]; then [ "$2" = tcg ] && echo qemu || echo kvm; else echo "$1"; fi
}

"$DETECT" --json >"$TMP/json"
jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); exec("for k in sys.argv[2:]: v=v[k]"); print("" if v is None else v)' "$TMP/json" "$@"; }
accel=$(jget accelerator)

for mode in "" --vm --container; do
    ours=$("$DETECT" $mode); ours_rc=$?
    name="detect-host: qkvm-detect ${mode:-(any)} = systemd-detect-virt"
    if [ $have_sdv = 0 ]; then skip "$name" "systemd-detect-virt not installed"; continue; fi
    theirs=$(systemd-detect-virt $mode); theirs_rc=$?
    expect_eq "$name" "$theirs rc=$theirs_rc" "$(as_systemd "$ours" "$accel") rc=$ours_rc"
done

vw_map() {  # virt-what facts -> systemd identifiers; sub-facts (xen-hvm, redhat, ...) dropped
    while read -r f; do
        case "$f" in
        aws) echo amazon ;; google_cloud) echo google ;; hyperv) echo microsoft ;;
        virtualbox) echo oracle ;; ibm_power-kvm|ibm_systemz-kvm) echo kvm ;;
        ibm_power-lpar_*) echo powervm ;; ibm_systemz-zvm) echo zvm ;;
        kvm|qemu|xen|vmware|parallels|bhyve|uml|docker|podman|lxc|openvz|wsl) echo "$f" ;;
        esac
    done | sort -u
}
if [ $have_vw = 0 ]; then
    skip "detect-host: layers = virt-what" "virt-what not installed"
else
    vm=$(as_systemd "$("$DETECT" --vm)" "$accel")
    ct=$("$DETECT" --container)
    ours=$(printf '%s\n%s\n' "$vm" "$ct" | grep -vx none | sort -u)
    theirs=$(virt-what 2>/dev/null | vw_map)
    sd=
    [ $have_sdv = 1 ] && sd=$(printf '%s\n%s\n' "$(systemd-detect-virt --vm)" \
        "$(systemd-detect-virt --container)" | grep -vx none | sort -u)
    if [ -n "$sd" ] && [ "$(echo $sd)" != "$(echo $theirs)" ]; then
        # The two oracles disagree about a layer: qkvm-detect follows systemd-detect-virt
        # (checked above), whose rules and names it implements.
        skip "detect-host: layers = virt-what" "virt-what says '$(echo $theirs)', systemd-detect-virt '$(echo $sd)'"
    else
        expect_eq "detect-host: layers = virt-what" "$(echo $theirs)" "$(echo $ours)"
    fi
fi

# --json: the identifier is the plain answer, and the evidence it names was found.
plain=$("$DETECT")
check "detect-host: --json agrees and names its evidence" python3 - "$plain" "$TMP/json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[2]))
assert j["identifier"] == sys.argv[1], (j["identifier"], sys.argv[1])
ev = j["evidence"]
for k in ("cpuid.hypervisor_bit", "cpuid.signature", "dmi.sys_vendor", "dmi.product_name",
          "dmi.bios_vendor", "hypervisor.type", "xen.proc_xen", "device_tree.hypervisor_compatible",
          "kernel_log.paravirt", "kernel_log.hypervisor_detected", "container.dockerenv",
          "container.containerenv", "container.pid1_environ", "cgroup.self", "wsl.osrelease",
          "kvm_pvm.module"):
    assert ev[k]["source"], k
for layer in ("vm", "container"):
    if j[layer] != "none":
        assert ev[j[layer + "_evidence"]]["found"], layer
assert j["kvm_pvm"]["host"] == ev["kvm_pvm.module"]["found"]
EOF

# The kvm_pvm host module, when loaded, is reported as such.
if [ -d /sys/module/kvm_pvm ]; then
    expect_eq "detect-host: kvm_pvm host reported" True \
        "$(jget kvm_pvm host)"
else
    skip "detect-host: kvm_pvm host reported" "no kvm_pvm module here"
fi

if [ $have_sdv = 1 ]; then
    missing=$(comm -23 <(systemd-detect-virt --list | sort) <("$DETECT" --list | sort) | tr '\n' ' ')
    expect_eq "detect-host: --list covers systemd-detect-virt --list" "" "$missing"
    # -q prints nothing and keeps the status
    out=$("$DETECT" -q); rc=$?
    systemd-detect-virt -q; expect_eq "detect-host: -q" "'' $?" "'$out' $rc"
    # yes (0) or not (non-zero: no, or could not tell, where systemd says 1 and we say 2)
    for opt in --chroot --private-users; do
        "$DETECT" $opt 2>/dev/null; a=$?; systemd-detect-virt $opt 2>/dev/null; b=$?
        expect_eq "detect-host: $opt" "$([ $b = 0 ]; echo $?)" "$([ $a = 0 ]; echo $?)"
    done
fi

# Bad use: a clear message and status 2, never a crash.
"$DETECT" --root /nonexistent/dir >/dev/null 2>"$TMP/err"; rc=$?
expect_eq "detect-host: bad --root" "2 1" "$rc $(grep -c 'cannot read root' "$TMP/err")"
"$DETECT" extra >/dev/null 2>&1; expect_eq "detect-host: stray argument" 2 $?
