#!/usr/bin/env bash
# `npm run image`: builds the repository's Dockerfile daemonless with buildah, on the two bases
# image/build-base.sh makes locally from Debian packages and the pinned Node (reused when they exist),
# and prints the image's uncompressed size. No registry is contacted except Debian's archive (bases,
# once) and the npm registry (`npm ci` in the build stage, through a build cache).
#
# Usage: image/build.sh [image-ref]        default localhost/ambit:<package.json version>
# Prints IMAGE=<ref> and SIZE_BYTES=<n> as its last two lines.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
for tool in buildah podman mmdebstrap runc; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "image: $tool is not installed (bash .ci/setup installs buildah, podman, skopeo, mmdebstrap, runc)" >&2
    exit 3
  }
done
version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json" | head -1)"
ref="${1:-localhost/ambit:$version}"

start=$SECONDS
bases="$(bash "$root/image/build-base.sh")"
base_image="$(sed -n 's/^BASE_IMAGE=//p' <<<"$bases")"
build_image="$(sed -n 's/^BUILD_IMAGE=//p' <<<"$bases")"
echo "image: bases ready in $((SECONDS - start)) s ($base_image, $build_image)" >&2

# The OCI runtime and the limits every container of ours gets (image/oci-args.sh says why).
# shellcheck source=oci-args.sh
. "$root/image/oci-args.sh"

start=$SECONDS
# --layers: an unchanged package-lock.json reuses the `npm ci` layer on the next build; --force-rm:
# a failed step leaves no working container behind.
# --network=host: the build stage reaches the npm registry without a CNI network set up for builds.
# The host's CA bundle as a build secret, for `npm ci` behind a TLS-inspecting proxy (never in a layer).
secret=()
ca_bundle="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
[ -s "$ca_bundle" ] && secret=(--secret "id=ca-bundle,src=$ca_bundle")
buildah bud --layers --force-rm --network=host "${AMBIT_OCI_ARGS[@]}" "${secret[@]}" \
  --build-arg "BASE_IMAGE=$base_image" --build-arg "BUILD_IMAGE=$build_image" \
  -t "$ref" -f "$root/Dockerfile" "$root" >&2
size="$(podman image inspect --format '{{.Size}}' "$ref")"
echo "image: $ref built in $((SECONDS - start)) s, $((size / 1000000)) MB uncompressed" >&2
echo "IMAGE=$ref"
echo "SIZE_BYTES=$size"
