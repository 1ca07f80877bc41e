#!/usr/bin/env sh
# Builds the ambit_native N-API addon (transparent.c) into ztunnel/native/build/ambit_native.node.
# Plain cc against the headers that ship with Node (node_api.h is ABI-stable), so no node-gyp, no
# header download and no install hook (npm 11 blocks those; we build explicitly from `npm run build`).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
inc="${AMBIT_NODE_INCLUDE:-$(node -p "require('node:path').resolve(process.execPath, '../../include/node')")}"
if [ ! -f "$inc/node_api.h" ]; then
  echo "build:native: node_api.h not found in $inc (set AMBIT_NODE_INCLUDE to Node's include/node directory)" >&2
  exit 1
fi
cc="${CC:-cc}"
mkdir -p "$here/build"
"$cc" -O2 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
  -DNODE_GYP_MODULE_NAME=ambit_native -DNAPI_VERSION=8 -I"$inc" \
  -o "$here/build/ambit_native.node.tmp" "$here/transparent.c"
mv "$here/build/ambit_native.node.tmp" "$here/build/ambit_native.node"
echo "build:native: $here/build/ambit_native.node"
