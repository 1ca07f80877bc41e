#!/usr/bin/env bash
# Builds the Dockerfile's two base images locally, from Debian packages (mmdebstrap, Debian's
# archive) plus the Node.js pinned in .ci/node.env (.ci/install-node.sh) — no registry pull:
#
#   runtime base  localhost/ambit-base:<node>-<key>   no package manager: libc, libstdc++, dash,
#                 iproute2, nftables, bpftool, mount (the node agent's tools) and `node` only
#   build base    localhost/ambit-build:<node>-<key>  Debian minbase + clang, libbpf-dev, bpftool,
#                 make, cc (eBPF objects, the N-API addons) + node, npm and Node's headers
#
# <key> hashes this script and .ci/node.env: an image whose tag exists is reused (one build per
# machine, so per CI run), a change to either rebuilds. Prints, as its last two lines,
#   BASE_IMAGE=<ref>
#   BUILD_IMAGE=<ref>
# Env: AMBIT_DEBIAN_MIRROR (default http://deb.debian.org/debian), AMBIT_DEBIAN_SUITE (bookworm).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../.ci/node.env
. "$root/.ci/node.env"
mirror="${AMBIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${AMBIT_DEBIAN_SUITE:-bookworm}"
security="${AMBIT_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

die() { echo "build-base: $*" >&2; exit 1; }
for tool in mmdebstrap buildah podman strip; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (bash .ci/setup installs it)"
done
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and buildah write a root-owned filesystem)"

key="$(cat "$0" "$root/.ci/node.env" | sha256sum | cut -c1-12)"
base_ref="localhost/ambit-base:$NODE_VERSION-$suite-$key"
build_ref="localhost/ambit-build:$NODE_VERSION-$suite-$key"

sources=(
  "deb $mirror $suite main"
  "deb $mirror $suite-updates main"
  "deb $security $suite-security main"
)
# Documentation and translations are not needed at run time; copyright files stay.
slim=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)

ctr=""
cleanup() { [ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT


commit() { # ref, then buildah config arguments
  local ref="$1"
  shift
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "org.opencontainers.image.source=ambit image/build-base.sh" "$@" "$ctr"
  buildah umount "$ctr" >/dev/null
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
  ctr=""
}

node_tmp="$(mktemp -d)"
trap 'cleanup; rm -rf "$node_tmp"' EXIT

if podman image exists "$base_ref"; then
  echo "build-base: $base_ref exists, reused" >&2
else
  start=$SECONDS
  # The pinned Node, verified (install-node.sh keeps the download in its cache).
  bash "$root/.ci/install-node.sh" "$node_tmp/prefix" >&2
  ctr="$(buildah from --quiet scratch)"
  rootfs="$(buildah mount "$ctr")"
  # variant=extract: only these packages and their dependencies, unpacked (no dpkg, no apt, no
  # maintainer scripts — nothing here needs configuring).
  mmdebstrap --quiet --variant=extract "${slim[@]}" \
    --include=libc6,libgcc-s1,libstdc++6,dash,iproute2,nftables,bpftool,mount \
    "$suite" "$rootfs" "${sources[@]}" >&2
  rm -rf "$rootfs/var/cache/apt" "$rootfs/var/lib/apt"
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/local/share/doc/node" "$rootfs/tmp" "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  # The symbol table is not needed to run (addons link against .dynsym, which stays): -18 MB.
  strip --strip-unneeded -o "$rootfs/usr/local/bin/node" "$node_tmp/prefix/bin/node"
  cp "$node_tmp/prefix/share/doc/node/LICENSE" "$rootfs/usr/local/share/doc/node/LICENSE" 2>/dev/null || true
  # uid 1337 is Istio's proxy uid; components that need no privilege run as it.
  printf 'root:x:0:0:root:/root:/bin/sh\nambit:x:1337:1337:ambit:/nonexistent:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nambit:x:1337:\n' >"$rootfs/etc/group"
  [ -e "$rootfs/bin/sh" ] || ln -s dash "$rootfs/bin/sh"
  chroot "$rootfs" /usr/local/bin/node --version >/dev/null || die "node does not run in the runtime base"
  commit "$base_ref"
  echo "build-base: $base_ref built in $((SECONDS - start)) s" >&2
fi

if podman image exists "$build_ref"; then
  echo "build-base: $build_ref exists, reused" >&2
else
  start=$SECONDS
  ctr="$(buildah from --quiet scratch)"
  rootfs="$(buildah mount "$ctr")"
  mmdebstrap --quiet --variant=minbase "${slim[@]}" \
    --include=ca-certificates,clang,libbpf-dev,bpftool,make,gcc,libc6-dev \
    "$suite" "$rootfs" "${sources[@]}" >&2
  bash "$root/.ci/install-node.sh" "$rootfs/usr/local" >&2
  chroot "$rootfs" /usr/local/bin/node --version >/dev/null || die "node does not run in the build base"
  commit "$build_ref"
  echo "build-base: $build_ref built in $((SECONDS - start)) s" >&2
fi

echo "BASE_IMAGE=$base_ref"
echo "BUILD_IMAGE=$build_ref"
