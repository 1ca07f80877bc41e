// The HBONE CONNECT request's headers, parsed and formatted exactly as istio/ztunnel writes them
// (istio/ztunnel src/proxy/outbound.rs create_hbone_request, src/baggage.rs):
//   :authority  <ip>:<port> | [<v6>]:<port> | <hostname>:<port>
//   forwarded   for="<client ip>:<port>"[;host=<service fqdn>]
//   baggage     k8s.namespace.name=..,k8s.<type>.name=..,service.name=..,service.version=..
//   traceparent 00-<32 hex>-<16 hex>-00
import { randomBytes } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { BadAuthority } from './errors.js';

export type Authority =
  | { kind: 'ip'; ip: string; port: number; family: 4 | 6 }
  | { kind: 'hostname'; hostname: string; port: number };

// RFC 1123 hostname (a Service FQDN for E/W hops): labels of letters, digits and dashes.
const HOSTNAME =
  /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/i;

function parsePort(text: string, authority: string): number {
  if (!/^[0-9]{1,5}$/.test(text)) throw new BadAuthority(authority, `port "${text}" is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new BadAuthority(authority, `port ${port} is out of range 1..65535`);
  return port;
}

/** Parses `:authority`; throws BadAuthority (→ 400) naming what is wrong. */
export function parseAuthority(authority: string | undefined): Authority {
  if (authority === undefined || authority === '') throw new BadAuthority(authority, 'missing');
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0 || authority[close + 1] !== ':') {
      throw new BadAuthority(authority, 'IPv6 authority must be [address]:port');
    }
    const ip = authority.slice(1, close);
    if (!ipaddr.IPv6.isValid(ip)) throw new BadAuthority(authority, `"${ip}" is not an IPv6 address`);
    return {
      kind: 'ip',
      ip: ipaddr.IPv6.parse(ip).toString(),
      port: parsePort(authority.slice(close + 2), authority),
      family: 6,
    };
  }
  const colon = authority.lastIndexOf(':');
  if (colon <= 0) throw new BadAuthority(authority, 'has no port (expected host:port)');
  const host = authority.slice(0, colon);
  const port = parsePort(authority.slice(colon + 1), authority);
  if (ipaddr.IPv4.isValidFourPartDecimal(host)) return { kind: 'ip', ip: host, port, family: 4 };
  if (host.includes(':')) throw new BadAuthority(authority, 'IPv6 address must be in brackets');
  if (/^[0-9.]+$/.test(host)) throw new BadAuthority(authority, `"${host}" is not a valid IPv4 address`);
  if (!HOSTNAME.test(host)) throw new BadAuthority(authority, `"${host}" is not a valid hostname`);
  return { kind: 'hostname', hostname: host.toLowerCase(), port };
}

/** `host:port` / `[v6]:port`: the one formatter, core/route/address.ts. */
export { formatAddr as formatAuthority } from '../route/address.js';

/** `forwarded: for="<ip>:<port>";host=<fqdn>` (RFC 7239 subset ztunnel sends). */
export interface Forwarded {
  forIp: string;
  forPort?: number;
  host?: string;
}

export function formatForwarded(f: Forwarded): string {
  const node = f.forIp.includes(':') ? `[${f.forIp}]` : f.forIp;
  const target = f.forPort === undefined ? node : `${node}:${f.forPort}`;
  return `for="${target}"${f.host ? `;host=${f.host}` : ''}`;
}

/**
 * Parses the first forwarded-element; `undefined` when absent or unparsable. A client-supplied
 * address is advisory: the server decides whether to trust it (source-address.ts), so a bad value
 * is ignored rather than failing the tunnel.
 */
export function parseForwarded(value: string | string[] | undefined): Forwarded | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  const element = text.split(',')[0]!;
  let forIp: string | undefined;
  let forPort: number | undefined;
  let host: string | undefined;
  for (const pair of element.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    const key = pair.slice(0, eq).trim().toLowerCase();
    let val = pair.slice(eq + 1).trim();
    if (val.startsWith('"') && val.endsWith('"') && val.length >= 2) val = val.slice(1, -1);
    if (key === 'for') {
      const m = /^\[([^\]]+)\](?::([0-9]{1,5}))?$/.exec(val) ?? /^([0-9.]+)(?::([0-9]{1,5}))?$/.exec(val);
      if (!m || !ipaddr.isValid(m[1]!)) return undefined;
      forIp = ipaddr.parse(m[1]!).toString();
      if (m[2] !== undefined) {
        const p = Number(m[2]);
        if (p < 1 || p > 65535) return undefined;
        forPort = p;
      }
    } else if (key === 'host') {
      host = val;
    }
  }
  if (forIp === undefined) return undefined;
  return { forIp, ...(forPort === undefined ? {} : { forPort }), ...(host ? { host } : {}) };
}

/** W3C baggage as ztunnel sends it: ordered key → value, percent-encoded values. */
export type Baggage = Record<string, string>;

/** Workload facts ztunnel puts in baggage (istio/ztunnel src/baggage.rs); empty fields are left out. */
export interface BaggageWorkload {
  clusterId?: string;
  namespace?: string;
  /** deployment | cronjob | pod | job */
  workloadType?: string;
  workloadName?: string;
  canonicalName?: string;
  canonicalRevision?: string;
  region?: string;
  zone?: string;
}

export function baggageFor(w: BaggageWorkload): Baggage {
  const b: Baggage = {};
  if (w.clusterId) b['k8s.cluster.name'] = w.clusterId;
  if (w.namespace) b['k8s.namespace.name'] = w.namespace;
  if (w.workloadType && w.workloadName) b[`k8s.${w.workloadType}.name`] = w.workloadName;
  if (w.canonicalName) b['service.name'] = w.canonicalName;
  if (w.canonicalRevision) b['service.version'] = w.canonicalRevision;
  if (w.region) b['cloud.region'] = w.region;
  if (w.zone) b['cloud.availability_zone'] = w.zone;
  return b;
}

export function formatBaggage(b: Baggage): string {
  return Object.entries(b)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join(',');
}

/** Parses a baggage header, skipping malformed members (W3C: a member without `=` is ignored). */
export function parseBaggage(value: string | string[] | undefined): Baggage {
  const text = Array.isArray(value) ? value.join(',') : value;
  const b: Baggage = {};
  if (!text) return b;
  for (const member of text.split(',')) {
    const kv = member.split(';')[0]!; // drop W3C member properties
    const eq = kv.indexOf('=');
    if (eq <= 0) continue;
    const key = kv.slice(0, eq).trim();
    if (key === '') continue;
    const raw = kv.slice(eq + 1).trim();
    try {
      b[key] = decodeURIComponent(raw);
    } catch {
      b[key] = raw;
    }
  }
  return b;
}

/** A fresh W3C traceparent per outbound connection (ztunnel: `00-<trace>-<span>-00`). */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`;
}

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
export function parseTraceparent(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text && TRACEPARENT.test(text) ? text : undefined;
}

/** Headers of one CONNECT request, built from what the outbound path knows. */
export function connectHeaders(req: {
  authority: string;
  forwarded?: Forwarded;
  baggage?: Baggage;
  traceparent?: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  const h: Record<string, string> = {
    ':method': 'CONNECT',
    ':authority': req.authority,
    traceparent: req.traceparent ?? newTraceparent(),
  };
  if (req.forwarded) h.forwarded = formatForwarded(req.forwarded);
  if (req.baggage) {
    const b = formatBaggage(req.baggage);
    if (b) h.baggage = b;
  }
  return { ...req.extra, ...h };
}
