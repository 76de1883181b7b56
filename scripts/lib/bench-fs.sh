# Sourced by scripts/bench-*: run a benchmark on a fresh, journaled ext4 instead of $TMPDIR.
#
# This machine's root filesystem is an ext4 without a journal, where every file created within
# minutes of thousands being deleted costs up to ten times more (the kernel will not reuse the
# freed inodes yet). A benchmark that deletes trees between runs would measure that. See
# docs/decisions.md, "Benchmarks".
#
#   rerun_on_fresh_ext4 "$0" "$@"
# As root, and unless BENCH_FS=tmpdir, runs the calling script again in a private mount
# namespace with $TMPDIR on a new ext4 (a sparse file on a loop device, removed afterwards),
# then exits with its status. Inside that run (or when it does not apply) it returns at once.
rerun_on_fresh_ext4() {
  local script=$1
  shift
  if [[ -n ${BENCH_FRESH_FS:-} || ${BENCH_FS:-fresh} != fresh || $(id -u) != 0 ]] ||
    ! command -v mkfs.ext4 unshare >/dev/null; then
    return 0
  fi
  local dir status=0
  dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-fs.XXXXXX")
  truncate -s 32G "$dir/fs.img"
  mkfs.ext4 -q -F "$dir/fs.img"
  mkdir "$dir/mnt"
  echo "working on a fresh ext4 (loop device, journaled)"
  BENCH_FRESH_FS=1 unshare -m -- bash -c 'mount -o loop "$1/fs.img" "$1/mnt" && shift && TMPDIR="$0" exec "$@"' \
    "$dir/mnt" "$dir" "$script" "$@" || status=$?
  rm -rf "$dir"
  exit "$status"
}
