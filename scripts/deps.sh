#!/usr/bin/env bash
# Installs the Debian packages qkvm needs, and only those missing. Idempotent.
#   scripts/deps.sh        build dependencies
#   scripts/deps.sh test   + what the tests use (qemu-utils as the format oracle, ...)
#   scripts/deps.sh run    + what the default guest recipe uses
#   scripts/deps.sh bench  + QEMU itself, the peer the benchmarks compare against
set -euo pipefail
want=(gcc make nasm pkg-config libcmocka-dev zlib1g-dev libzstd-dev libssl-dev libseccomp-dev)
case "${1:-}" in
  test)  want+=(make gcc binutils qemu-utils cpio gzip e2fsprogs debootstrap fdisk dpkg-dev iproute2 iputils-ping python3 virt-what systemd util-linux mount dmidecode strace clang libclang-rt-14-dev seabios nbdkit libnbd-bin qemu-system-x86 qemu-guest-agent grub-pc-bin grub-common xorriso mtools) ;;
  bench) want+=(qemu-utils cpio gzip dpkg-dev python3 qemu-system-x86 gcc libsqlite3-dev liblzma-dev zlib1g-dev libnbd-bin fio debootstrap fdisk grub-pc-bin) ;;
  run)   want+=(cpio gzip dpkg-dev seabios) ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# A stale package list is the usual cause of a failed install on a fresh machine.
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
