// ambit_native: the few socket options Node cannot set itself, for ztunnel's transparent sockets.
//
// Why native code at all (docs/capture.md §1, §3):
//  - tc bpf_sk_assign and nftables TPROXY hand a SYN for a NON-local address to ztunnel's wildcard
//    listener; the kernel only answers it (SYN-ACK from the original destination) when the listener
//    has IP_TRANSPARENT. Node has no API for it; one setsockopt per listener, after listen(), is enough.
//  - Source-IP preservation (docs/capture.md §3, istio/ztunnel "transparent" mode): an outgoing HBONE socket
//    bound to the source pod's IP. bind() to a non-local address needs IP_TRANSPARENT (or
//    IP_FREEBIND / ip_nonlocal_bind), and connect() from it needs IP_TRANSPARENT: the kernel's output
//    route lookup accepts a non-local source only with FLOWI_FLAG_ANYSRC, which it sets for
//    transparent sockets only (inet_sk_flowi_flags). libuv creates the socket inside bind(), so the
//    option cannot be set between socket() and bind() from JavaScript: we create the socket here.
//  - SO_ORIGINAL_DST for the REDIRECT (conntrack NAT) capture: a 16-byte getsockopt result that no
//    int-only sockopt binding can return (the `sockopt` npm package passes 4-byte ints only).
// Plain node_api.h (ABI-stable across Node versions), no node-addon-api, built by build.sh.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif

// Throws an Error whose .code is the errno name (EPERM, EBADF, ...) and whose message says which call failed.
static void throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s (errno %d)", what, strerror(err), err);
  const char *code = strerrorname_np(err);
  napi_throw_error(env, code ? code : "EUNKNOWN", msg);
}

static int get_int_arg(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, "EINVAL", usage);
    return -1;
  }
  return 0;
}

static int fd_family(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
  return ss.ss_family;
}

// Sets IP_TRANSPARENT (and IPV6_TRANSPARENT on IPv6 sockets, which may also carry v4-mapped traffic).
static int set_transparent(int fd, int family) {
  int one = 1;
  if (family == AF_INET6) {
    if (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one) != 0) return -1;
    // A dual-stack v6 socket also needs the v4 flag for v4-mapped flows; ignore failure on v6-only sockets.
    (void)setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
    return 0;
  }
  return setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
}

// setIpTransparent(fd: number): void
static napi_value SetIpTransparent(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_int_arg(env, info, 1, argv, "setIpTransparent(fd: number)") != 0) return NULL;
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "setIpTransparent: fd must be a non-negative integer");
    return NULL;
  }
  int family = fd_family(fd);
  if (family < 0) {
    throw_errno(env, "getsockname", errno);
    return NULL;
  }
  if (set_transparent(fd, family) != 0) {
    throw_errno(env, family == AF_INET6 ? "setsockopt(IPV6_TRANSPARENT)" : "setsockopt(IP_TRANSPARENT)", errno);
    return NULL;
  }
  return NULL;
}

static int parse_addr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return AF_INET;
  }
  if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return AF_INET6;
  }
  return -1;
}


// Runs socket() inside another network namespace: setns(CLONE_NEWNET) switches only the calling
// thread, and a socket keeps the netns it was created in for its whole life, so we switch, create,
// and switch back (istio/ztunnel in-pod mode creates its pod-side sockets the same way). Returns
// the fd or -1 with errno set. netns_path NULL/"" means the current namespace.
static int socket_in_netns(const char *netns_path, int family) {
  if (netns_path == NULL || netns_path[0] == '\0') {
    return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  }
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return -1;
  int target = open(netns_path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(self);
    errno = err;
    return -1;
  }
  int fd = -1, err = 0;
  if (setns(target, CLONE_NEWNET) != 0) {
    err = errno;
  } else {
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) err = errno;
    if (setns(self, CLONE_NEWNET) != 0) {
      // Cannot return to our own namespace: every later socket of this thread would be wrong. Fail hard.
      fprintf(stderr, "ambit_native: setns back to the original network namespace failed: %s\n", strerror(errno));
      abort();
    }
  }
  close(target);
  close(self);
  errno = err;
  return fd;
}

static int get_optional_string(napi_env env, napi_value v, char *buf, size_t size) {
  napi_valuetype t;
  buf[0] = '\0';
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_undefined || t == napi_null) return 0;
  size_t n = 0;
  if (t != napi_string || napi_get_value_string_utf8(env, v, buf, size, &n) != napi_ok) return -1;
  return 0;
}

// Parses ip:port for `fn` and opens a TCP socket of that family in `netns` ("" = this namespace).
// Returns the fd, or -1 after throwing a JavaScript error naming `fn` and what failed.
static int address_socket(napi_env env, const char *fn, const char *netns, const char *ip, int32_t port,
                          struct sockaddr_storage *ss, socklen_t *sslen, int *family) {
  *family = parse_addr(ip, port, ss, sslen);
  if (*family < 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: \"%s\" is not an IPv4 or IPv6 address", fn, ip);
    napi_throw_type_error(env, "EINVAL", msg);
    return -1;
  }
  int fd = socket_in_netns(netns, *family);
  if (fd < 0) throw_errno(env, netns[0] ? "socket in network namespace" : "socket", errno);
  return fd;
}

// createTransparentSocket(ip: string, port: number, netnsPath?: string): number
// A non-blocking TCP socket with IP_TRANSPARENT set BEFORE bind(ip, port), ready for
// `new net.Socket({ fd }).connect(...)`. The caller owns the fd (Node closes it with the socket).
static napi_value CreateTransparentSocket(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, "EINVAL", "createTransparentSocket(ip: string, port: number, netnsPath?: string)");
    return NULL;
  }
  char netns[512];
  if (get_optional_string(env, argv[2], netns, sizeof netns) != 0) {
    napi_throw_type_error(env, "EINVAL", "createTransparentSocket: netnsPath must be a string");
    return NULL;
  }
  char ip[64];
  size_t iplen = 0;
  if (napi_get_value_string_utf8(env, argv[0], ip, sizeof ip, &iplen) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "createTransparentSocket: ip must be a string");
    return NULL;
  }
  int32_t port;
  if (napi_get_value_int32(env, argv[1], &port) != napi_ok || port < 0 || port > 65535) {
    napi_throw_type_error(env, "EINVAL", "createTransparentSocket: port must be an integer 0..65535");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  int family;
  int fd = address_socket(env, "createTransparentSocket", netns, ip, port, &ss, &sslen, &family);
  if (fd < 0) return NULL;
  if (set_transparent(fd, family) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "setsockopt(IP_TRANSPARENT)", err);
    return NULL;
  }
  // Many tunnels from one pod IP to the same next hop: let the kernel pick distinct ports even
  // when the 4-tuple space is shared (bind-before-connect would otherwise reserve the port alone).
  int one = 1;
  (void)setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "bind", err);
    return NULL;
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// listenInNetns(netnsPath: string | undefined, ip: string, port: number, transparent: boolean): number
// A listening TCP socket created in another network namespace (see socket_in_netns), for
// `net.createServer().listen({ fd })`. Lets one ztunnel process own listeners in pod/node
// namespaces (and lets tests run real listeners inside the namespaces they create).
static napi_value ListenInNetns(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  size_t argc = 4;
  const char *usage = "listenInNetns(netnsPath: string | undefined, ip: string, port: number, transparent: boolean)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, "EINVAL", usage);
    return NULL;
  }
  char netns[512], ip[64];
  size_t n = 0;
  int32_t port;
  bool transparent = false;
  if (get_optional_string(env, argv[0], netns, sizeof netns) != 0 ||
      napi_get_value_string_utf8(env, argv[1], ip, sizeof ip, &n) != napi_ok ||
      napi_get_value_int32(env, argv[2], &port) != napi_ok || port < 0 || port > 65535 ||
      napi_get_value_bool(env, argv[3], &transparent) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", usage);
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  int family;
  int fd = address_socket(env, "listenInNetns", netns, ip, port, &ss, &sslen, &family);
  if (fd < 0) return NULL;
  int one = 1;
  const char *what = NULL;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) what = "setsockopt(SO_REUSEADDR)";
  else if (transparent && set_transparent(fd, family) != 0) what = "setsockopt(IP_TRANSPARENT)";
  else if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) what = "bind";
  else if (listen(fd, 511) != 0) what = "listen";
  if (what) {
    int err = errno;
    close(fd);
    throw_errno(env, what, err);
    return NULL;
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// getOriginalDst(fd: number): { address: string, port: number }   (IPv4 SO_ORIGINAL_DST, REDIRECT capture)
static napi_value GetOriginalDst(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_int_arg(env, info, 1, argv, "getOriginalDst(fd: number)") != 0) return NULL;
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "getOriginalDst: fd must be a non-negative integer");
    return NULL;
  }
  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  memset(&sin, 0, sizeof sin);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sin, &len) != 0) {
    throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", errno);
    return NULL;
  }
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof buf);
  napi_value obj, addr, port;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &addr);
  napi_create_int32(env, ntohs(sin.sin_port), &port);
  napi_set_named_property(env, obj, "address", addr);
  napi_set_named_property(env, obj, "port", port);
  return obj;
}

static napi_value Init(napi_env env, napi_value exports) {
  // napi_enumerable so Object.keys(addon) lists them (docs/capture.md §7).
  napi_property_descriptor props[] = {
      {"setIpTransparent", NULL, SetIpTransparent, NULL, NULL, NULL, napi_enumerable, NULL},
      {"createTransparentSocket", NULL, CreateTransparentSocket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listenInNetns", NULL, ListenInNetns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getOriginalDst", NULL, GetOriginalDst, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
