# Sourced by scripts/bench-*: the two images the registry and unpack benchmarks use, made from
# parts of this machine's /usr (a real root filesystem: thousands of files).
#   make_bench_images WORK  →  WORK/one (one gzip layer) and WORK/ten (the same files as ten
#   layers), OCI layouts with the ref "bench"; WORK/one.tar.gz and WORK/part.*.tar.gz are the
#   layers; $bench_entries is the number of tar entries.

# add_blob LAYOUT FILE → prints the sha256 hex, stores FILE as a blob of LAYOUT
add_blob() {
  local layout=$1 file=$2 hex
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  cp "$file" "$layout/blobs/sha256/$hex"
  echo "$hex"
}

# make_image WORK LAYOUT TAR... : an OCI layout with one gzip layer per uncompressed tar.
make_image() {
  local work=$1 layout=$2
  shift 2
  mkdir -p "$layout/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  local layers="[]" diffs="[]" t hex size
  for t in "$@"; do
    diffs=$(jq -c --arg d "sha256:$(sha256sum "$t" | cut -d' ' -f1)" '. + [$d]' <<<"$diffs")
    gzip -6 -c "$t" >"$t.gz"
    hex=$(add_blob "$layout" "$t.gz")
    size=$(stat -c %s "$t.gz")
    layers=$(jq -c --arg d "sha256:$hex" --argjson s "$size" \
      '. + [{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":$d,"size":$s}]' <<<"$layers")
  done
  jq -n -c --argjson diffs "$diffs" \
    '{architecture:"amd64",os:"linux",config:{},rootfs:{type:"layers",diff_ids:$diffs}}' >"$work/config.json"
  local chex csize mhex msize
  chex=$(add_blob "$layout" "$work/config.json")
  csize=$(stat -c %s "$work/config.json")
  jq -n -c --arg c "sha256:$chex" --argjson cs "$csize" --argjson layers "$layers" \
    '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},layers:$layers}' \
    >"$work/manifest.json"
  mhex=$(add_blob "$layout" "$work/manifest.json")
  msize=$(stat -c %s "$work/manifest.json")
  jq -n -c --arg m "sha256:$mhex" --argjson ms "$msize" \
    '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$m,size:$ms,
      annotations:{"org.opencontainers.image.ref.name":"bench"}}]}' >"$layout/index.json"
}

make_bench_images() {
  local work=$1 sources=() d p
  for d in usr/include usr/lib/python3 usr/lib/python3.11 usr/share/perl usr/share/perl5; do
    [[ -d /$d ]] && sources+=("$d")
  done
  echo "building the images from /usr parts: ${sources[*]} ..."
  tar -C / -cf "$work/one.tar" "${sources[@]}"
  make_image "$work" "$work/one" "$work/one.tar"
  tar -tf "$work/one.tar" >"$work/list"
  bench_entries=$(wc -l <"$work/list")
  split -n l/10 -d "$work/list" "$work/part."
  local parts=()
  for p in "$work"/part.??; do
    tar -C / --no-recursion -cf "$p.tar" -T "$p"
    parts+=("$p.tar")
  done
  make_image "$work" "$work/ten" "${parts[@]}"
  echo "one layer: $(du -m "$work/one.tar.gz" | cut -f1) MB gzip, $(du -m "$work/one.tar" | cut -f1) MB tar, $bench_entries entries;" \
    "ten layers: $(cat "$work"/part.*.tar.gz | wc -c | awk '{printf "%d", $1/1048576}') MB gzip in total"
  rm -f "$work"/*.tar "$work/list" "$work"/part.?? "$work/config.json" "$work/manifest.json"
}
