# syntax=docker/dockerfile:1
# One image for every Ambit component: `ambit ca | ztunnel | bpf-agent | waypoint | waypoint-controller`
# (the charts pick the command). Multi-stage: the toolchains (clang for the eBPF objects, cc for the
# N-API addon, TypeScript) stay in the build stage; the runtime stage has Node, the compiled output and
# the few tools the node agent shells out to (ip, tc, nft, bpftool, ss).
#
# NOTE: this Dockerfile cannot be built in the development environment of this repository (there is no
# Docker engine there); it is kept in step with `.ci/setup` and `npm run build`, which do run there.

ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev bpftool make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# tsc → dist/, the IP_TRANSPARENT addon, the eBPF objects (against the vmlinux.h in bpf-redirect/build).
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# The node agent's tools; ca/ztunnel/waypoint need none of them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 nftables bpftool \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The layout the code resolves at run time: dist/ next to proto/ and bpf-redirect/{build,native/build}.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
COPY --from=build /src/bpf-redirect/build/*.bpf.o ./bpf-redirect/build/
COPY --from=build /src/bpf-redirect/native/build/ambit_native.node ./bpf-redirect/native/build/
ENV NODE_ENV=production
# Non-root by default (uid 1337, Istio's proxy uid). ztunnel (NET_ADMIN/NET_RAW) and the bpf-redirect
# agent (privileged) run as root through their chart's securityContext; ca, waypoint and the
# waypoint controller run as this user.
USER 1337:1337
ENTRYPOINT ["node", "/app/dist/cli/ambit.js"]
CMD ["--help"]
