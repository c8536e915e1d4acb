#!/usr/bin/env bash
# The default guest: Debian's own cloud kernel and busybox-static, downloaded as .deb files
# (never installed on the host), unpacked into OUT, and an initramfs around busybox.
#   guest/build.sh [OUT]     (default build/guest)
# Produces OUT/vmlinuz and OUT/initrd.gz. Cached: the .deb files are kept in OUT/debs and a
# second run downloads nothing.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/build/guest}" && cd "${1:-$top/build/guest}" && pwd)
debs=$out/debs
mkdir -p "$debs"

# fetch PACKAGE: the newest .deb of PACKAGE into $debs, unless one is there already
fetch() {
  local pkg=$1
  if ! ls "$debs/${pkg}"_*.deb >/dev/null 2>&1; then
    echo "guest: downloading $pkg" >&2
    if ! (cd "$debs" && apt-get download -q "$pkg" >/dev/null 2>&1); then
      # a fresh machine's package lists may be missing or stale
      apt-get update -qq >&2
      (cd "$debs" && apt-get download -q "$pkg" >/dev/null)
    fi
  fi
  ls "$debs/${pkg}"_*.deb | tail -n 1
}

meta=$(fetch linux-image-cloud-amd64)
kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*-cloud-amd64\).*/\1/p' | head -n 1)
[ -n "$kpkg" ] || { echo "guest: cannot tell which kernel linux-image-cloud-amd64 depends on" >&2; exit 1; }
kdeb=$(fetch "$kpkg")
bdeb=$(fetch busybox-static)

stamp="$out/.stamp"
want="$(basename "$kdeb") $(basename "$bdeb") $(md5sum "$0" | cut -c1-32)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$out/initrd.gz" ] && [ -f "$out/vmlinuz" ]; then
  exit 0
fi

rm -rf "$out/kernel" "$out/busybox" "$out/root"
dpkg-deb -x "$kdeb" "$out/kernel"
dpkg-deb -x "$bdeb" "$out/busybox"
kver=$(ls "$out/kernel/lib/modules" | head -n 1)
cp "$out/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"

root=$out/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,root,var/log,var/run,lib/modules/"$kver"}
cp "$out/busybox/bin/busybox" "$root/bin/busybox"

# The virtio modules the kernel package ships (where they are modules, not built in), with
# what they depend on, dependencies first. depmod never ran on this unpacked tree, so the
# dependencies come from each module's own .modinfo "depends=" line.
moddir=$out/kernel/lib/modules/$kver
order=$root/etc/modules.order
: >"$order"
declare -A path=() seen=()
while IFS= read -r f; do
  n=$(basename "$f" .ko); path[${n//-/_}]=$f
done < <(cd "$moddir" && find kernel -name '*.ko')
add_module() {  # add_module NAME
  local name=${1//-/_} rel dep
  rel=${path[$name]:-}
  [ -n "$rel" ] || return 0          # built in, or not in this kernel
  [ -n "${seen[$name]:-}" ] && return 0
  seen[$name]=1
  for dep in $(tr '\0' '\n' <"$moddir/$rel" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '); do
    add_module "$dep"
  done
  mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
  cp "$moddir/$rel" "$root/lib/modules/$kver/$rel"
  echo "/lib/modules/$kver/$rel" >>"$order"
}
for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk \
         virtio_net virtio_console virtio-rng evdev button; do
  add_module "$m"
done

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.order); do insmod "$m" 2>/dev/null; done
# the ACPI power button (system_powerdown): busybox acpid runs /etc/acpi/PWRF/00000080
[ -e /dev/input/event0 ] && acpid
export PS1='qkvm-guest# ' HOME=/root PATH=/bin
echo "qkvm-guest: ready ($(nproc) CPUs, $(uname -r))"
exec setsid cttyhack sh
INIT
chmod +x "$root/init"
mkdir -p "$root/etc/acpi/PWRF"
printf '#!/bin/sh\necho "qkvm-guest: power button" >/dev/console\npoweroff -f\n' >"$root/etc/acpi/PWRF/00000080"
chmod +x "$root/etc/acpi/PWRF/00000080"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9 >"$out/initrd.gz.tmp")
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
echo "$want" >"$stamp"
echo "guest: $out/vmlinuz ($kver) and $out/initrd.gz ($(wc -l <"$order") modules)" >&2
