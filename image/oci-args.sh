# Sourced by image/build.sh: AMBIT_OCI_ARGS, the runtime and limits for `buildah bud` (and, the same
# values, test/image-world.ts's `podman run`):
#  - runc, not crun: crun 1.8 (Debian 12) refuses a hybrid cgroup layout (v1 controllers plus a cgroup2
#    mount with a controller enabled), which is what this machine has;
#  - explicit ulimits no higher than ours: podman/buildah default to nofile/nproc values that need
#    CAP_SYS_RESOURCE to set where the runtime runs without it (measured here: nproc 65536 refused,
#    32768 accepted).
hard_nofile="$(ulimit -Hn)"
hard_nproc="$(ulimit -Hu)"
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
[ "$hard_nproc" = unlimited ] || [ "$hard_nproc" -gt 32768 ] && hard_nproc=32768
AMBIT_OCI_ARGS=(--runtime runc --ulimit "nofile=$hard_nofile:$hard_nofile" --ulimit "nproc=$hard_nproc:$hard_nproc")
