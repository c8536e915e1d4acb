#!/usr/bin/env bash
# Interoperability with the real qemu-img/qemu-io, both ways: images made and written by QEMU
# read identically in qkvm and survive qkvm's writes; images made by qkvm-img pass qemu-img check.
. "$(dirname "$0")/lib.sh"
QI=$TOP/$B/qkvm-img
QIO=$TOP/$B/qkvm-io
command -v qemu-img >/dev/null || { skip img-interop "qemu-img not installed"; exit 0; }
cd "$TMP"

# the fields both print must be equal
json_same() {  # json_same A.json B.json
  python3 - "$1" "$2" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
def cmp(x, y, path):
    if isinstance(x, dict) and isinstance(y, dict):
        for k in x.keys() & y.keys():
            if k == "actual-size": continue
            if not cmp(x[k], y[k], path + "." + k): return False
        return True
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(cmp(p, q, path) for p, q in zip(x, y))
    if x != y: print("differs at", path, x, y); return False
    return True
sys.exit(0 if cmp(a, b, "") else 1)
PY
}
qcheck() { qemu-img check "$@" >/dev/null 2>&1; }
# reads with qemu-io, fails on any pattern mismatch
qread() { local f=$1 out; shift; local a=(); for c in "$@"; do a+=(-c "$c"); done; local o=(); [[ $f == driver=* ]] && o=(--object secret,id=s0,data=pass0 --image-opts); out=$(qemu-io "${o[@]}" "${a[@]}" "$f" 2>&1) || return 1; ! grep -qi "failed\|error\|can't open" <<<"$out"; }
kread() { local f=$1; shift; local a=(--object secret,id=s0,data=pass0); for c in "$@"; do a+=(-c "$c"); done; "$QIO" "${a[@]}" "$f" >out.txt 2>&1 || { cat out.txt >&2; return 1; }; ! grep -q "failed" out.txt; }
kwrite() { local f=$1; shift; local a=(); for c in "$@"; do a+=(-c "$c"); done; "$QIO" "${a[@]}" "$f" >out.txt 2>&1 || { cat out.txt >&2; return 1; }; }

WRITES=("write -P 0x11 0 64k" "write -P 0x22 100k 300k" "write -P 0x33 3000 1000" "write -z 1M 128k" "write -P 0x44 2M 1" "write -P 0x55 3M 1M")
READS=("read -P 0x11 4000 60k" "read -P 0x22 100k 300k" "read -P 0x33 3000 1000" "read -P 0 1M 128k" "read -P 0x44 2M 1" "read -P 0x55 3M 1M" "read -P 0 5M 1M")
KW=("write -P 0x66 10k 5k" "write -P 0x77 1M 4k" "write -P 0x88 4M 200k" "write -z 3M 64k" "discard 5M 1M" "write -P 0x99 6M 3")
KR=("read -P 0x66 10k 5k" "read -P 0x77 1M 4k" "read -P 0 1052672 124k" "read -P 0x88 4M 200k" "read -P 0 3M 64k" "read -P 0x55 3211264 960k" "read -P 0x99 6M 3")

# 1. QEMU makes and writes, qkvm reads, writes, QEMU checks and reads
i=0
for opts in "cluster_size=512" "cluster_size=4k" "cluster_size=64k" "cluster_size=2M" \
            "compat=0.10" "compat=0.10,cluster_size=4k" "extended_l2=on" "extended_l2=on,cluster_size=16k" \
            "refcount_bits=1" "refcount_bits=2" "refcount_bits=4" "refcount_bits=8" "refcount_bits=32" \
            "refcount_bits=64" "compression_type=zstd" "lazy_refcounts=on" "preallocation=metadata"; do
  i=$((i+1)); f=q$i.qcow2
  qemu-img create -q -f qcow2 -o "$opts" $f 8M
  qwargs=(); for c in "${WRITES[@]}"; do qwargs+=(-c "$c"); done
  qemu-io "${qwargs[@]}" $f >/dev/null
  qemu-img info --output=json $f >a.json; "$QI" info --output=json $f >b.json
  check "qemu-made [$opts]: info json equal" json_same a.json b.json
  check "qemu-made [$opts]: qkvm reads" kread $f "${READS[@]}"
  qemu-img convert -O raw $f a.raw; "$QI" convert -O raw $f b.raw
  check "qemu-made [$opts]: convert to raw identical" cmp -s a.raw b.raw
  qemu-img map --output=json $f >a.map; "$QI" map --output=json $f >b.map
  check "qemu-made [$opts]: map json equal" json_same a.map b.map
  kwrite $f "${KW[@]}"
  check "qemu-made [$opts]: qemu-img check after qkvm writes" qcheck $f
  check "qemu-made [$opts]: qemu-io reads qkvm writes" qread $f "${KR[@]}"
  "$QI" check $f >/dev/null 2>&1
  expect_eq "qemu-made [$opts]: qkvm-img check clean" 0 $?
done

# 2. qkvm makes and writes, QEMU checks and reads
i=0
for opts in "cluster_size=512" "cluster_size=4k" "cluster_size=64k" "cluster_size=2M" \
            "compat=0.10" "extended_l2=on" "extended_l2=on,cluster_size=2M" \
            "refcount_bits=1" "refcount_bits=2" "refcount_bits=4" "refcount_bits=8" "refcount_bits=32" \
            "refcount_bits=64" "compression_type=zstd" "lazy_refcounts=on" \
            "preallocation=metadata" "preallocation=falloc" "preallocation=full" "cluster_size=512,refcount_bits=1"; do
  i=$((i+1)); f=k$i.qcow2
  "$QI" create -q -f qcow2 -o "$opts" $f 8M
  check "qkvm-made [$opts]: qemu-img check fresh" qcheck $f
  kwrite $f "${WRITES[@]}" "${KW[@]}"
  check "qkvm-made [$opts]: qemu-img check written" qcheck $f
  check "qkvm-made [$opts]: qemu-io reads" qread $f "read -P 0x11 4000 6k" "${KR[@]}"
  qemu-img info --output=json $f >a.json; "$QI" info --output=json $f >b.json
  check "qkvm-made [$opts]: info json equal" json_same a.json b.json
  # fallocated extents: the file system may call them holes or data; both read zeros
  if [ "$opts" != preallocation=falloc ]; then
    qemu-img map --output=json $f >a.map; "$QI" map --output=json $f >b.map
    check "qkvm-made [$opts]: map json equal" json_same a.map b.map
  fi
done

# 3. backing chains, both ways
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c "write -P 1 0 4M" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
qemu-io -c "write -P 2 1M 1M" mid.qcow2 >/dev/null
"$QI" create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
kwrite top.qcow2 "write -P 3 1536k 1000" "write -z 3M 64k"
check "chain: qemu-img check top" qcheck top.qcow2
check "chain: qemu-io reads through qkvm top" qread top.qcow2 "read -P 1 0 1M" "read -P 2 1M 512k" "read -P 3 1536k 1000" "read -P 2 1573864 24k" "read -P 0 3M 64k" "read -P 1 3211264 64k" "read -P 0 4M 4M"
check "chain: qkvm reads" kread top.qcow2 "read -P 1 0 1M" "read -P 2 1M 512k" "read -P 3 1536k 1000" "read -P 0 3M 64k" "read -P 0 4M 4M"
qemu-img info --output=json --backing-chain top.qcow2 >a.json; "$QI" info --output=json --backing-chain top.qcow2 >b.json
check "chain: info --backing-chain json equal" json_same a.json b.json
qemu-img map --output=json top.qcow2 >a.map; "$QI" map --output=json top.qcow2 >b.map
check "chain: map json equal" json_same a.map b.map
qemu-img create -q -f raw rawbase.img 4M; qemu-io -f raw -c "write -P 9 0 4M" rawbase.img >/dev/null
"$QI" create -q -f qcow2 -b rawbase.img -F raw over.qcow2 8M
check "chain: raw backing, larger overlay" qread over.qcow2 "read -P 9 0 4M" "read -P 0 4M 4M"

# 4. snapshots, nested: snapshot, write, snapshot, apply the first
"$QI" create -q -f qcow2 s.qcow2 8M
kwrite s.qcow2 "write -P 1 0 2M"
"$QI" snapshot -c one s.qcow2
kwrite s.qcow2 "write -P 2 1M 2M"
"$QI" snapshot -c two s.qcow2
kwrite s.qcow2 "write -P 3 0 512k"
check "snapshots: qemu-img check" qcheck s.qcow2
expect_eq "snapshots: list matches qemu-img" "$(qemu-img snapshot -l s.qcow2 | awk '{print $1,$2}')" "$("$QI" snapshot -l s.qcow2 | awk '{print $1,$2}')"
"$QI" snapshot -a one s.qcow2
check "snapshots: apply first, qemu reads it" qread s.qcow2 "read -P 1 0 2M" "read -P 0 2M 6M"
check "snapshots: check after apply" qcheck s.qcow2
qemu-img snapshot -a two s.qcow2
check "snapshots: qkvm reads qemu-applied second" kread s.qcow2 "read -P 1 0 1M" "read -P 2 1M 2M"
"$QI" snapshot -d one s.qcow2
check "snapshots: check after delete" qcheck s.qcow2
qemu-img snapshot -c three s.qcow2; qemu-io -c "write -P 4 0 1M" s.qcow2 >/dev/null
"$QI" snapshot -a three s.qcow2
check "snapshots: qemu-made snapshot applied by qkvm" kread s.qcow2 "read -P 1 0 1M" "read -P 2 1M 2M"
check "snapshots: final check" qcheck s.qcow2

# 5. compressed clusters: QEMU writes them, qkvm reads and overwrites
for ct in zlib zstd; do
  qemu-img create -q -f qcow2 -o compression_type=$ct c.qcow2 4M
  qemu-io -c "write -c -P 0x5a 0 64k" -c "write -c -P 0x5b 64k 64k" c.qcow2 >/dev/null
  qemu-img convert -q -c -O qcow2 -o compression_type=$ct a.raw cc.qcow2
  check "compressed $ct: qkvm reads qemu's" kread c.qcow2 "read -P 0x5a 0 64k" "read -P 0x5b 64k 64k"
  "$QI" convert -O raw cc.qcow2 b2.raw; qemu-img convert -O raw cc.qcow2 a2.raw
  check "compressed $ct: convert of qemu-compressed image identical" cmp -s a2.raw b2.raw
  kwrite c.qcow2 "write -P 0x5c 4k 4k"
  check "compressed $ct: overwrite check" qcheck c.qcow2
  check "compressed $ct: overwrite read" qread c.qcow2 "read -P 0x5a 0 4k" "read -P 0x5c 4k 4k" "read -P 0x5a 8k 56k" "read -P 0x5b 64k 64k"
  "$QI" convert -c -O qcow2 -o compression_type=$ct a.raw kc.qcow2
  check "compressed $ct: qkvm-compressed passes check" qcheck kc.qcow2
  check "compressed $ct: qemu-img compare" qemu-img compare -q a.raw kc.qcow2
  expect_eq "compressed $ct: qemu counts compressed clusters" yes "$(qemu-img check --output=json kc.qcow2 | grep -q compressed-clusters && echo yes)"
done

# 7. LUKS, both ways, and a wrong secret
SEC=(--object secret,id=s0,data=pass0)
qopts() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=s0"; }
# QEMU times PBKDF2 with getrusage; here that often reads no CPU time at all ("Unable to get
# accurate CPU usage", most tries on a busy machine), so many tries (a failed one is quick)
for t in $(seq 1 60); do
  qemu-img create -q -f qcow2 "${SEC[@]}" -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 lq.qcow2 4M 2>/dev/null && break
done
qemu-io "${SEC[@]}" --image-opts "$(qopts lq.qcow2)" -c "write -P 0x42 0 100k" >/dev/null
check "luks qemu-made: qkvm reads" kread lq.qcow2 "read -P 0x42 0 100k"
"$QIO" "${SEC[@]}" -c "write -P 0x43 1M 5000" -c "write -P 0x44 70000 3" lq.qcow2 >/dev/null
check "luks qemu-made: qemu reads qkvm writes" qread "$(qopts lq.qcow2)" "read -P 0x43 1M 5000" "read -P 0x44 70000 3"
check "luks qemu-made: check" qemu-img check -q "${SEC[@]}" --image-opts "$(qopts lq.qcow2)"
"$QI" create -q -f qcow2 "${SEC[@]}" -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 lk.qcow2 4M
"$QIO" "${SEC[@]}" -c "write -P 0x45 0 70k" lk.qcow2 >/dev/null
check "luks qkvm-made: qemu reads" qread "$(qopts lk.qcow2)" "read -P 0x45 0 70k" "read -P 0 70k 100k"
check "luks qkvm-made: check" qemu-img check -q "${SEC[@]}" --image-opts "$(qopts lk.qcow2)"
qemu-img info --output=json lk.qcow2 >a.json; "$QI" info --output=json lk.qcow2 >b.json
check "luks qkvm-made: info json equal" json_same a.json b.json
sum=$(md5sum lq.qcow2)
msg=$("$QIO" --object secret,id=s0,data=wrong -c "read 0 1" lq.qcow2 2>&1); rc=$?
expect_eq "luks wrong secret: one line, nonzero" "1 1" "$(echo "$msg" | wc -l) $rc"
expect_eq "luks wrong secret: file unchanged" "$sum" "$(md5sum lq.qcow2)"

# 6. the other commands against qemu-img
"$QI" convert -O qcow2 a.raw conv.qcow2
check "convert raw->qcow2: qemu-img compare" qemu-img compare -q a.raw conv.qcow2
check "convert raw->qcow2: check" qcheck conv.qcow2
"$QI" convert -O qcow2 -o cluster_size=4k,compat=0.10 q1.qcow2 conv2.qcow2
check "convert qcow2->qcow2 v2: qemu-img compare" qemu-img compare -q q1.qcow2 conv2.qcow2
expect_eq "compare identical" 0 "$("$QI" compare -q a.raw conv.qcow2; echo $?)"
qemu-io -f raw -c "write -P 0xee 12345 1" b.raw >/dev/null
expect_eq "compare differs" "Content mismatch at offset 12288!" "$("$QI" compare a.raw b.raw)"
for sz in "--size 1G" "--size 100M -o cluster_size=4k" "q3.qcow2" "a.raw"; do
  expect_eq "measure [$sz] qcow2 equal" "$(qemu-img measure -O qcow2 $sz)" "$("$QI" measure -O qcow2 $sz)"
done
cp k3.qcow2 r.qcow2; cp k3.qcow2 r2.qcow2
"$QI" resize r.qcow2 +10M >/dev/null; qemu-img resize r2.qcow2 +10M >/dev/null
check "resize grow: same content" qemu-img compare -q r.qcow2 r2.qcow2
check "resize grow: check" qcheck r.qcow2
"$QI" resize --shrink r.qcow2 -14M >/dev/null
check "resize shrink: check" qcheck r.qcow2
expect_eq "resize shrink: size" 4194304 "$(qemu-img info --output=json r.qcow2 | python3 -c 'import json,sys;print(json.load(sys.stdin)["virtual-size"])')"
"$QI" resize r.qcow2 -1M >/dev/null 2>&1
expect_eq "resize shrink needs --shrink" 1 $?
# commit: top's data lands in the base, top becomes empty
cp base.qcow2 cb.qcow2; "$QI" create -q -f qcow2 -b cb.qcow2 -F qcow2 ct.qcow2
kwrite ct.qcow2 "write -P 7 2M 1M"
"$QI" commit ct.qcow2 >/dev/null
check "commit: base has the data" qread cb.qcow2 "read -P 1 0 2M" "read -P 7 2M 1M" "read -P 1 3M 1M"
check "commit: checks" qcheck cb.qcow2
check "commit: top still reads the same" qread ct.qcow2 "read -P 7 2M 1M"
# commit -b into a deeper layer: the base gets the top's view, nothing above it changes;
# the same chain committed by qemu-img gives the same base
for who in k q; do
  qemu-img create -q -f qcow2 c3b$who.qcow2 4M
  qemu-io -c "write -P 1 0 4M" c3b$who.qcow2 >/dev/null
  qemu-img create -q -f qcow2 -b c3b$who.qcow2 -F qcow2 c3m$who.qcow2 3M
  qemu-io -c "write -P 2 1M 1M" -c "write -z 2560k 256k" c3m$who.qcow2 >/dev/null
  qemu-img create -q -f qcow2 -b c3m$who.qcow2 -F qcow2 c3t$who.qcow2 4M
  qemu-io -c "write -P 3 1536k 1M" -c "write -z 100k 3000" c3t$who.qcow2 >/dev/null
done
qemu-img convert -O raw c3tk.qcow2 view.raw
"$QI" commit -b c3bk.qcow2 c3tk.qcow2 >/dev/null
qemu-img commit -q -b c3bq.qcow2 c3tq.qcow2
check "commit -b: the base reads as the top did" qemu-img compare -q -f raw -F qcow2 view.raw c3bk.qcow2
check "commit -b: same base as qemu-img's" qemu-img compare -q c3bk.qcow2 c3bq.qcow2
check "commit -b: the top is not emptied (-d implied)" qemu-img compare -q -f raw -F qcow2 view.raw c3tk.qcow2
check "commit -b: top, middle and base check" eval "qcheck c3tk.qcow2 && qcheck c3mk.qcow2 && qcheck c3bk.qcow2"
check "commit -b: the middle is untouched" qemu-img compare -q c3mk.qcow2 c3mq.qcow2
out=$("$QI" commit -b nosuch.qcow2 c3tk.qcow2 2>&1); rc=$?
check "commit -b outside the chain: one line, nonzero" test $rc -ne 0 -a "$(echo "$out" | wc -l)" = 1
# extended L2: partial write-zeroes become zero subclusters (no data written), as QEMU does
qemu-img create -q -f qcow2 -o extended_l2=on ez.qcow2 1M
kwrite ez.qcow2 "write -P 1 0 128k" "write -z 1000 20000" "write -z 70000 2048"
check "extended L2 zero subclusters: reads" qread ez.qcow2 "read -P 1 0 1000" "read -P 0 1000 20000" "read -P 1 21000 49000" "read -P 0 70000 2048" "read -P 1 72048 10000"
check "extended L2 zero subclusters: check" qcheck ez.qcow2
expect_eq "extended L2 zero subclusters: qemu maps 2k..20k as zero, no data" yes "$(qemu-img map --output=json ez.qcow2 | grep -q '"start": 2048, "length": 18432, .*"zero": true, "data": false' && echo yes)"
# rebase: safe (content kept) and unsafe
qemu-img create -q -f qcow2 nb.qcow2 8M
"$QI" rebase -b nb.qcow2 -F qcow2 top.qcow2
check "rebase safe: content kept" qread top.qcow2 "read -P 1 0 1M" "read -P 2 1M 512k" "read -P 3 1536k 1000" "read -P 0 3M 64k" "read -P 1 3211264 64k"
expect_eq "rebase safe: new backing" nb.qcow2 "$(qemu-img info --output=json top.qcow2 | python3 -c 'import json,sys;print(json.load(sys.stdin)["backing-filename"])')"
check "rebase: check" qcheck top.qcow2
"$QI" rebase -u -b base.qcow2 -F qcow2 top.qcow2
expect_eq "rebase -u: new backing" base.qcow2 "$(qemu-img info --output=json top.qcow2 | python3 -c 'import json,sys;print(json.load(sys.stdin)["backing-filename"])')"
# amend
"$QI" create -q -f qcow2 -o compat=0.10 am.qcow2 4M; kwrite am.qcow2 "write -P 1 0 1M"
"$QI" amend -o compat=1.1,lazy_refcounts=on am.qcow2
expect_eq "amend up: compat" 1.1 "$(qemu-img info --output=json am.qcow2 | python3 -c 'import json,sys;print(json.load(sys.stdin)["format-specific"]["data"]["compat"])')"
kwrite am.qcow2 "write -z 0 64k"
"$QI" amend -o compat=0.10,lazy_refcounts=off am.qcow2
check "amend down: check" qcheck am.qcow2
check "amend down: zeros kept" qread am.qcow2 "read -P 0 0 64k" "read -P 1 64k 960k"
# scatter lists as virtio-blk sends them (readv/writev of 4 KiB pages): into new qcow2
# clusters, unaligned, and on raw; QEMU reads them back and checks the image
pages=$(printf ' 4k%.0s' $(seq 240))
for fmt in qcow2 raw; do
  qemu-img create -q -f $fmt v.$fmt 8M
  kwrite v.$fmt "writev -P 0x5a 4096$pages" "writev -P 0x5b 3000001 100 0 4k 7" &&
    qread v.$fmt "read -P 0 0 4k" "read -P 0x5a 4k 960k" "read -P 0 987136 2012865" \
      "read -P 0x5b 3000001 4203" "read -P 0 3004204 100k" &&
    kread v.$fmt "readv -P 0x5a 4096$pages" "readv -P 0x5b 3000001 4000 203"
  check "writev/readv of 240 pages and odd pieces on $fmt" test $? = 0
done
check "qcow2 written by writev passes qemu-img check" qcheck v.qcow2
words=$(printf ' 512%.0s' $(seq 260))
msg=$("$QIO" -c "writev 0$words" v.raw 2>&1); rc=$?
check "qkvm-io: too many words refused, not cut" test $rc != 0 -a "$msg" != "${msg#*too many arguments}"

# dd
"$QI" dd -O raw bs=64k count=10 skip=1 if=a.raw of=dd.raw
dd if=a.raw of=dd2.raw bs=64k count=10 skip=1 status=none
check "dd: same bytes as coreutils dd" cmp -s dd.raw dd2.raw
exit 0
