/* ambit_bpfmap: the bpf(2) map calls the node agent makes often, in-process (4-7 us a write instead of
 * a ~3 ms `bpftool` exec, docs/capture.md section 5), with no libbpf: BPF_OBJ_GET on a
 * pinned map, then BPF_MAP_UPDATE_ELEM / BPF_MAP_DELETE_ELEM on its fd. Loading, pinning and
 * attaching stay with bpftool/tc. Optional: the agent falls back to bpftool when this is not built. */
#include <errno.h>
#include <linux/bpf.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

static napi_value fail(napi_env env, const char *what) {
  char msg[256];
  int err = errno;
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == ENOENT ? "ENOENT" : err == EPERM ? "EPERM" : "EBPF", msg);
  return NULL;
}

/* objGet(path: string): number (fd) */
static napi_value ObjGet(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "objGet(path: string)");
    return NULL;
  }
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.pathname = (uint64_t)(uintptr_t)path;
  long fd = sys_bpf(BPF_OBJ_GET, &attr);
  if (fd < 0) return fail(env, path);
  napi_value out;
  napi_create_int32(env, (int32_t)fd, &out);
  return out;
}

static int buffer_arg(napi_env env, napi_value v, void **data, size_t *len) {
  bool is_buf = false;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) return -1;
  return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
}

/* update(fd: number, key: Buffer, value: Buffer): void   (BPF_ANY) */
static napi_value Update(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  void *key, *value;
  size_t klen, vlen;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || buffer_arg(env, argv[1], &key, &klen) ||
      buffer_arg(env, argv[2], &value, &vlen)) {
    napi_throw_type_error(env, "EINVAL", "update(fd: number, key: Buffer, value: Buffer)");
    return NULL;
  }
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)fd;
  attr.key = (uint64_t)(uintptr_t)key;
  attr.value = (uint64_t)(uintptr_t)value;
  attr.flags = BPF_ANY;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0) return fail(env, "BPF_MAP_UPDATE_ELEM");
  return NULL;
}

/* remove(fd: number, key: Buffer): boolean   (false when the key was absent) */
static napi_value Remove(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  void *key;
  size_t klen;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || buffer_arg(env, argv[1], &key, &klen)) {
    napi_throw_type_error(env, "EINVAL", "remove(fd: number, key: Buffer)");
    return NULL;
  }
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)fd;
  attr.key = (uint64_t)(uintptr_t)key;
  napi_value out;
  if (sys_bpf(BPF_MAP_DELETE_ELEM, &attr) < 0) {
    if (errno != ENOENT) return fail(env, "BPF_MAP_DELETE_ELEM");
    napi_get_boolean(env, false, &out);
    return out;
  }
  napi_get_boolean(env, true, &out);
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"objGet", NULL, ObjGet, NULL, NULL, NULL, napi_enumerable, NULL},
      {"update", NULL, Update, NULL, NULL, NULL, napi_enumerable, NULL},
      {"remove", NULL, Remove, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
