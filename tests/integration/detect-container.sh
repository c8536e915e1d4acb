#!/usr/bin/env bash
# qkvm-detect inside unshare'd namespaces dressed up as containers: a private /run holding
# /run/.containerenv (podman), a PID 1 whose environment says container=..., and PID 1 itself
# carrying $container. Each answer is checked against the expected identifier and, where
# installed, against systemd-detect-virt run in the same namespace.
source "$(dirname "$0")/lib.sh"
DETECT=$TOP/$B/qkvm-detect

if ! unshare --mount --pid --fork --mount-proc true 2>/dev/null; then
    skip "detect-container: namespaces" "unshare --mount --pid not permitted here"
    exit 0
fi
have_sdv=1; command -v systemd-detect-virt >/dev/null || have_sdv=0

# check_ns NAME EXPECTED SETUP [VAR=value...]: in a fresh mount+pid namespace whose PID 1 (sh)
# has the given environment, runs SETUP, then the tool as a child of PID 1.
check_ns() {
    local name=$1 want=$2 setup=$3; shift 3
    local got sd
    got=$(env "$@" unshare --mount --pid --fork --mount-proc sh -c "$setup; \"\$0\" --container" "$DETECT")
    expect_eq "detect-container: $name" "$want" "$got"
    if [ $have_sdv = 1 ]; then
        sd=$(env "$@" unshare --mount --pid --fork --mount-proc sh -c "$setup; systemd-detect-virt --container")
        expect_eq "detect-container: $name = systemd-detect-virt" "$sd" "$got"
    fi
}

# podman: its marker file in a /run private to the namespace.
check_ns "podman from /run/.containerenv" podman \
    'mount -t tmpfs tmpfs /run && touch /run/.containerenv'

# PID 1 (sh here) carries container=..., read by us (PID 2) from /proc/1/environ.
check_ns "rkt from /proc/1/environ" rkt : container=rkt
got=$(env container=rkt unshare --mount --pid --fork --mount-proc sh -c ': ; "$0" --json' "$DETECT" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["container_evidence"])')
expect_eq "detect-container: rkt evidence is PID 1's environ" container.pid1_environ "$got"
check_ns "lxc-libvirt from /proc/1/environ" lxc-libvirt : container=lxc-libvirt
check_ns "unknown manager is container-other" container-other : container=garden

# PID 1 itself: its own $container is authoritative, and empty means no container at all.
got=$(unshare --mount --pid --fork --mount-proc env container=systemd-nspawn "$DETECT" --container)
expect_eq "detect-container: PID 1 with \$container" systemd-nspawn "$got"
got=$(unshare --mount --pid --fork --mount-proc env container=lxc "$DETECT" --json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["container"], j["container_evidence"])')
expect_eq "detect-container: PID 1 evidence is its own environment" "lxc container.own_environment" "$got"
got=$(unshare --mount --pid --fork --mount-proc env container= "$DETECT" --container)
expect_eq "detect-container: PID 1 with empty \$container" none "$got"
if [ $have_sdv = 1 ]; then
    sd=$(unshare --mount --pid --fork --mount-proc env container= systemd-detect-virt --container)
    expect_eq "detect-container: PID 1 with empty \$container = systemd-detect-virt" "$sd" "$got"
fi

# A fake root inside the namespace: --root reads its proc/1/environ, not the namespace's.
mkdir -p "$TMP/root/proc/1" "$TMP/root/run"
printf 'HOME=/\0container=docker\0' >"$TMP/root/proc/1/environ"
got=$(env container=rkt unshare --mount --pid --fork --mount-proc "$DETECT" --root "$TMP/root")
expect_eq "detect-container: --root fake /proc/1/environ" docker "$got"
touch "$TMP/root/run/.containerenv"
printf 'container=oci\0' >"$TMP/root/proc/1/environ"
got=$(unshare --mount --pid --fork --mount-proc "$DETECT" --root "$TMP/root" --json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["identifier"], j["container_evidence"])')
expect_eq "detect-container: --root oci resolved by marker files" "podman container.containerenv" "$got"
