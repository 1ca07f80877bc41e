// One address type for the routing answers: an IP and a port, with the IP canonicalised once where it
// enters (istio/ztunnel src/socket.rs `to_canonical`: an IPv4-mapped IPv6 address from a dual-stack
// socket becomes IPv4, so every later comparison and index lookup sees one spelling).
import { normalizeIp } from '../state/ip.js';

export interface SocketAddr {
  readonly ip: string;
  readonly port: number;
}

/** The canonical form of an IP text (see core/state/ip.ts normalizeIp). */
export const canonicalIp = (ip: string): string => normalizeIp(ip);

/** A SocketAddr with its IP canonicalised. */
export function socketAddr(ip: string, port: number): SocketAddr {
  return { ip: normalizeIp(ip), port };
}

/** `ip:port`, or `[v6]:port` (RFC 3986 §3.2.2), as HBONE `:authority` and access logs write it. */
export function formatAddr(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export const isLoopback = (ip: string): boolean => {
  const n = normalizeIp(ip);
  return n.startsWith('127.') || n === '::1';
};
