#!/usr/bin/env bash
# Assembles the base images Dockerfile.agent builds on, from this machine's own
# files, for hosts that cannot reach an image registry:
#
#   berth-base:local   node (this host's binary), the tools the agent runs
#                      (util-linux, e2fsprogs, xfsprogs), the shared libraries
#                      ldd lists for them, busybox-static for /bin/sh
#   berth-build:local  the same plus npm (the Dockerfile's build stages)
#
# and `docker import`s them (DOCKER_HOST is honoured). Then:
#
#   docker build -f Dockerfile.agent --network host \
#     --build-arg BASE_IMAGE=berth-base:local --build-arg BUILD_IMAGE=berth-build:local \
#     --build-arg NODE_VERSION=$(node -p 'process.versions.node.split(".")[0]') -t berth-agent:local .
#
# Usage: scripts/local-base-image.sh [--base-tag T] [--build-tag T] [--no-build-image]
set -euo pipefail

base_tag=berth-base:local
build_tag=berth-build:local
with_build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --base-tag) base_tag=$2; shift 2 ;;
    --build-tag) build_tag=$2; shift 2 ;;
    --no-build-image) with_build=0; shift ;;
    *) echo "local-base-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# What the agent and `berth doctor` shell out to (volume-plugin/, lib/, agent/cli.ts),
# plus the repair tools an operator reaches for with `docker exec`.
TOOLS=(blkid blockdev losetup mount umount findmnt sync fsck
       mkfs.ext4 mke2fs e2fsck fsck.ext4 dumpe2fs resize2fs chattr
       mkfs.xfs xfs_growfs xfs_info xfs_db xfs_spaceman xfs_repair)

need() { command -v "$1" >/dev/null || { echo "local-base-image.sh: $1 not found on this host ($2)" >&2; exit 1; }; }
need node 'install Node.js 20+'
need busybox 'apt-get install busybox-static'
need docker 'apt-get install docker.io'
for t in "${TOOLS[@]}"; do need "$t" 'apt-get install util-linux e2fsprogs xfsprogs'; done
if ldd "$(command -v busybox)" >/dev/null 2>&1; then
  echo 'local-base-image.sh: busybox is dynamically linked; install busybox-static' >&2
  exit 1
fi

root=$(mktemp -d /tmp/berth-base-XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,lib64,etc,tmp,root,var/lib/berth,run/docker/plugins}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root" "$root/var/lib/berth"

# Copies a file to the same path inside the image (symlinks become their target's copy plus the link).
copy_in() {
  local src=$1
  if [ -L "$src" ]; then
    local target
    target=$(readlink "$src")
    mkdir -p "$root$(dirname "$src")"
    ln -sfn "$target" "$root$src"
    case "$target" in /*) copy_in "$target" ;; *) copy_in "$(dirname "$src")/$target" ;; esac
    return
  fi
  [ -e "$root$src" ] && return
  mkdir -p "$root$(dirname "$src")"
  cp -p "$src" "$root$src"
}

# The shared libraries (and the dynamic loader) an executable needs.
copy_libs() {
  ldd "$1" 2>/dev/null | awk '/=> \// {print $3} /^\s*\/[^ ]+ \(/ {print $1}' | while read -r lib; do
    copy_in "$(readlink -f "$lib")"
    # keep the soname the binary asks for (libfoo.so.1 -> libfoo.so.1.2.3)
    [ "$(readlink -f "$lib")" != "$lib" ] && { mkdir -p "$root$(dirname "$lib")"; ln -sfn "$(readlink -f "$lib")" "$root$lib" 2>/dev/null || true; }
  done
}

# busybox for /bin/sh and the small utilities; never under the name of a real
# tool, so nothing on PATH can resolve to busybox's losetup or mount. (Its sh
# still prefers its own applets for commands it runs itself; the agent runs
# tools without a shell.)
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $(busybox --list); do
  case " ${TOOLS[*]} " in *" $applet "*) continue ;; esac
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

ln -s ../../bin/busybox "$root/usr/bin/env"   # for #!/usr/bin/env node

cp "$(readlink -f "$(command -v node)")" "$root/usr/local/bin/node"
copy_libs "$(readlink -f "$(command -v node)")"

for t in "${TOOLS[@]}"; do
  path=$(command -v "$t")
  real=$(readlink -f "$path")
  # Debian's /usr merge: /sbin and /bin are links to /usr; install under /usr in the image.
  case "$path" in /sbin/*|/bin/*) dest=/usr$path ;; *) dest=$path ;; esac
  mkdir -p "$root$(dirname "$dest")"
  if [ "$real" != "$path" ] && [ "$(dirname "$real")" = "$(dirname "$path")" ]; then
    cp -p "$real" "$root$(dirname "$dest")/$(basename "$real")"
    ln -sfn "$(basename "$real")" "$root$dest"
  else
    cp -p "$real" "$root$dest"
  fi
  # mount/umount are setuid on the host; the agent runs them as root, so drop the bit.
  chmod u-s "$root$dest" 2>/dev/null || true
  if [ "$(head -c 4 "$real" | tail -c 3)" = ELF ]; then copy_libs "$real"; fi
done

# the dynamic loader under the name every binary asks for
for ld in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1; do
  if [ -e "$ld" ]; then copy_in "$ld"; fi
done

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
if [ -f /etc/mke2fs.conf ]; then cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"; fi

# Every tool is the real one and starts inside the image (a missing library
# fails here, not at the first Mount).
chroot_check() {
  local t path
  for t in "${TOOLS[@]}"; do
    path=$(command -v "$t")
    case "$path" in /sbin/*|/bin/*) path=/usr$path ;; esac
    [ -x "$root$path" ] || { echo "local-base-image.sh: $t missing in the image" >&2; return 1; }
    case "$(readlink -f "$root$path")" in */busybox) echo "local-base-image.sh: $t is busybox in the image" >&2; return 1 ;; esac
  done
  env -u NODE_EXTRA_CA_CERTS chroot "$root" /usr/local/bin/node -e 'process.exit(0)'
  chroot "$root" /usr/sbin/mkfs.xfs -V >/dev/null
  chroot "$root" /usr/sbin/mke2fs -V >/dev/null 2>&1
  chroot "$root" /usr/bin/mount -V >/dev/null
  chroot "$root" /usr/sbin/losetup -V >/dev/null
  chroot "$root" /usr/sbin/blkid -V >/dev/null
  local out
  out=$(chroot "$root" /usr/bin/chattr 2>&1 || true)   # no arguments: usage, exit 1
  case "$out" in Usage:*) ;; *) echo "local-base-image.sh: chattr does not start in the image: $out" >&2; return 1 ;; esac
}
chroot_check

node_version=$(node -p 'process.versions.node')
# Re-importing identical files would make a new image id and void every
# build cache layer above it: import only when the files changed.
fingerprint() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -c . | sha256sum | cut -c1-64; }
current() { docker image inspect --format '{{index .Config.Labels "berth.rootfs.sha256"}}' "$1" 2>/dev/null || true; }
PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
import() {
  local tag=$1 title=$2 sum
  shift 2
  sum=$(fingerprint)
  if [ "$(current "$tag")" = "$sum" ]; then echo "$tag"; return; fi
  tar --numeric-owner -C "$root" -c . | docker import \
    --change "ENV $PATH_ENV" "$@" \
    --change "ENV NODE_VERSION=$node_version" \
    --change 'CMD ["node"]' \
    --change "LABEL berth.rootfs.sha256=$sum" \
    --change "LABEL org.opencontainers.image.title=$title org.opencontainers.image.description=\"assembled from the host's node $node_version, util-linux, e2fsprogs, xfsprogs, busybox\"" \
    - "$tag" >/dev/null
  echo "$tag"
}
import "$base_tag" berth-base

if [ "$with_build" = 1 ]; then
  npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..
  npm_dir=$(cd "$npm_dir" && pwd)
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  # npm must trust what this host trusts (a TLS-inspecting proxy's CA, for one)
  ca_env=()
  ca=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
  if [ -f "$ca" ]; then
    mkdir -p "$root/etc/ssl/certs"
    cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
    ca_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
  fi
  env -u NODE_EXTRA_CA_CERTS chroot "$root" /usr/local/bin/node /usr/local/bin/npm --version >/dev/null
  import "$build_tag" berth-build "${ca_env[@]}"
fi
