#!/usr/bin/env bash
# Regenerates the seed images in tests/fuzz/corpus/ with qemu-img and qemu-io: small qcow2
# images of each flavour (cluster sizes, v2/v3, refcount widths, extended L2, compression,
# snapshots, backing name, lazy refcounts left dirty, zero clusters, preallocation). Seeds
# that a longer fuzzing run added (named by their hash) are kept.
set -eu
dir=$(cd "$(dirname "$0")" && pwd)/corpus
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
mk() {  # mk NAME OPTIONS SIZE QEMU-IO-COMMANDS...
  local name=$1 opts=$2 size=$3; shift 3
  qemu-img create -q -f qcow2 -o "$opts" "$name" "$size"
  local a=()
  for c in "$@"; do a+=(-c "$c"); done
  [ ${#a[@]} -eq 0 ] || qemu-io "${a[@]}" "$name" >/dev/null
  cp "$name" "$dir/seed-$name"
}
mk v3-512.qcow2 cluster_size=512 1M "write -P 1 0 3k" "write -P 2 700k 1000"
mk v2-1k.qcow2 compat=0.10,cluster_size=1k 1M "write -P 3 1k 5k" "write -z 2k 1k"
mk rc1-4k.qcow2 cluster_size=4k,refcount_bits=1 2M "write -P 4 0 12k" "discard 4k 4k"
mk rc64-2k.qcow2 cluster_size=2k,refcount_bits=64 1M "write -P 5 10k 6k"
mk rc2-1k.qcow2 cluster_size=1k,refcount_bits=2 1M "write -P 6 0 4k"
mk extl2-16k.qcow2 cluster_size=16k,extended_l2=on 1M "write -P 7 1k 2k" "write -z 8k 1k" \
   "write -P 8 40k 512"
mk zero-2k.qcow2 cluster_size=2k 1M "write -P 9 0 8k" "write -z 2k 2k" "write -z -u 4k 2k" \
   "discard 6k 2k"
qemu-img create -q -f qcow2 -o cluster_size=4k,lazy_refcounts=on lazy-dirty-4k.qcow2 1M
# abort leaves the dirty bit set and the refcounts behind
qemu-io -c "write -P 10 0 8k" -c abort lazy-dirty-4k.qcow2 >/dev/null 2>&1 || true
cp lazy-dirty-4k.qcow2 "$dir/seed-lazy-dirty-4k.qcow2"
mk prealloc-4k.qcow2 cluster_size=4k,preallocation=metadata 32k
qemu-img create -q -f raw base.raw 1M
mk backing-4k.qcow2 cluster_size=4k,backing_file=base.raw,backing_fmt=raw 1M "write -P 11 4k 4k"
mk snap-4k.qcow2 cluster_size=4k 1M "write -P 12 0 8k"
qemu-img snapshot -c one snap-4k.qcow2
qemu-io -c "write -P 13 4k 8k" snap-4k.qcow2 >/dev/null
qemu-img snapshot -c two snap-4k.qcow2
qemu-io -c "write -P 14 0 2k" snap-4k.qcow2 >/dev/null
cp snap-4k.qcow2 "$dir/seed-snap-4k.qcow2"
for ct in zlib zstd; do
  head -c 16384 /dev/urandom | base64 >text
  truncate -s 64k text
  qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4k,compression_type=$ct text \
    "$dir/seed-compressed-$ct-4k.qcow2"
done
