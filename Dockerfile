# syntax=docker/dockerfile:1
# One image for every Ambit component: `ambit ca | ztunnel | bpf-agent | waypoint | waypoint-controller`
# (the charts pick the command). Multi-stage: the toolchains (clang for the eBPF objects, cc for the
# N-API addons, TypeScript) stay in the build stage; the runtime stage has Node, the compiled output and
# the few tools the node agent shells out to (ip, tc, nft, bpftool, mount).
#
# Both bases are build arguments, and both carry the Node.js pinned in .ci/node.env (24.22.3, LTS).
# `npm run image` (image/build.sh) builds them locally from Debian packages plus that Node
# (image/build-base.sh: no registry pull) and builds this file daemonless with buildah:
#   buildah bud --network=host --build-arg BUILD_IMAGE=localhost/ambit-build:<tag> \
#     --build-arg BASE_IMAGE=localhost/ambit-base:<tag> -t localhost/ambit:0.1.0 .
# With a registry at hand, the official Node images of the same version work too (the two RUN checks
# below then install the missing Debian packages): `docker build -t <registry>/ambit:0.1.0 .`

ARG BUILD_IMAGE=docker.io/library/node:24.22.3-bookworm
ARG BASE_IMAGE=docker.io/library/node:24.22.3-bookworm-slim

FROM ${BUILD_IMAGE} AS build
RUN if command -v clang && command -v bpftool && command -v make && [ -f /usr/include/bpf/bpf_helpers.h ]; then :; \
    else apt-get update && apt-get install -y --no-install-recommends clang libbpf-dev bpftool make \
      && rm -rf /var/lib/apt/lists/*; fi
WORKDIR /src
COPY package.json package-lock.json ./
# A TLS-inspecting egress proxy's CA, when the build host needs one, comes in as a build secret
# (`--secret id=ca-bundle,src=...`, image/build.sh passes the host's bundle): used by npm, kept out of
# every layer.
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca-bundle; fi; \
    npm ci --no-audit --no-fund
COPY . .
# tsc → dist/, the IP_TRANSPARENT addon, the eBPF objects (CO-RE, against the vmlinux.h that
# `make -C bpf-redirect` dumps from the build host's /sys/kernel/btf/vmlinux), then production deps only,
# without what only compilers and readers use (TypeScript sources and declarations, source maps, docs,
# the `esnext` builds no Node entry point names, native prebuilds for other platforms): ~55 MB, most of
# it @kubernetes/client-node's generated API.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && find node_modules -type f \( -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' -o -name '*.md' \) -delete \
 && find node_modules -type d -path '*/build/esnext' -prune -exec rm -rf {} + \
 && find node_modules -type d -path '*/prebuilds/*' -prune ! -name 'linux-x64*' -exec rm -rf {} + \
 && rm -rf node_modules/@types

FROM ${BASE_IMAGE} AS runtime
# The node agent's tools; ca/ztunnel/waypoint need none of them.
RUN if command -v ip && command -v tc && command -v nft && command -v bpftool; then :; \
    else apt-get update && apt-get install -y --no-install-recommends iproute2 nftables bpftool \
      && rm -rf /var/lib/apt/lists/*; fi
WORKDIR /app
# The layout the code resolves at run time: dist/ next to proto/ and bpf-redirect/build and ztunnel/native/build.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
COPY --from=build /src/examples ./examples
COPY --from=build /src/bpf-redirect/build/*.bpf.o /src/bpf-redirect/build/ambit_bpfmap.node ./bpf-redirect/build/
COPY --from=build /src/ztunnel/native/build/ambit_native.node ./ztunnel/native/build/
ENV NODE_ENV=production
# Non-root by default (uid 1337, Istio's proxy uid): ca, waypoint and the waypoint controller run as
# it. ztunnel needs NET_ADMIN + NET_RAW (IP_TRANSPARENT listeners, binds to pod addresses) and the
# bpf-redirect agent is privileged: both run as root through their chart's securityContext.
USER 1337:1337
ENTRYPOINT ["node", "/app/dist/cli/ambit.js"]
CMD ["--help"]
