// IP text normalisation for index keys: one spelling per address, so lookups by whatever form a
// socket reports (IPv4-mapped IPv6 on dual-stack listeners, uncompressed IPv6) hit the same entry.
import ipaddr from 'ipaddr.js';

const MAPPED_V4 = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

/** IPv4 stays as is; IPv4-mapped IPv6 becomes IPv4; other IPv6 becomes RFC 5952 text. Invalid text is returned unchanged. */
export function normalizeIp(ip: string): string {
  if (!ip.includes(':')) return ip;
  const mapped = MAPPED_V4.exec(ip);
  if (mapped) return mapped[1]!;
  try {
    const addr = ipaddr.IPv6.parse(ip);
    return addr.isIPv4MappedAddress() ? addr.toIPv4Address().toString() : addr.toString();
  } catch {
    return ip;
  }
}
