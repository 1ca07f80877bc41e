// Field-value conversions from AuthorizationPolicy strings to the L4 match model, exactly as istiod does them
// (istio/istio pilot/pkg/serviceregistry/ambient/authorization.go: stringToMatch, stringToIP, stringToPort,
// stringToServiceAccountMatch). istiod drops unparsable ports and IPs silently; we drop them the same way but
// report each one so `ambit policy check` can say why a value has no effect.
import ipaddr from 'ipaddr.js';
import type { CidrMatch, ServiceAccountMatch, StringMatch } from '../state/model.js';

/** `*` → presence, `*x` → suffix, `x*` → prefix, else exact (the leading `*` is checked first, like istiod). */
export function toStringMatch(value: string): StringMatch {
  if (value === '*') return { presence: true };
  if (value.startsWith('*')) return { suffix: value.slice(1) };
  if (value.endsWith('*')) return { prefix: value.slice(0, -1) };
  return { exact: value };
}

export function toStringMatches(values: readonly string[] | undefined): StringMatch[] {
  return (values ?? []).map(toStringMatch);
}

/** Result of a conversion that may drop values; `rejected` holds each dropped input and why. */
export interface Converted<T> {
  values: T[];
  rejected: { value: string; reason: string }[];
}

/**
 * Go's strconv.ParseUint(m, 10, 32) then `p > 65535` → skip. ParseUint takes plain decimal digits only
 * (no sign, no spaces, no "0x"); leading zeros are accepted.
 */
export function toPorts(values: readonly string[] | undefined): Converted<number> {
  const out: Converted<number> = { values: [], rejected: [] };
  for (const v of values ?? []) {
    if (!/^[0-9]+$/.test(v)) {
      out.rejected.push({ value: v, reason: 'not a port number' });
      continue;
    }
    const p = Number(v);
    if (p > 65535) {
      out.rejected.push({ value: v, reason: 'port out of range 0-65535' });
      continue;
    }
    out.values.push(p);
  }
  return out;
}

/** Parses a single IP the way Go's netip.ParseAddr would accept it (no zones, four-part decimal IPv4). */
export function parseIp(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (text.includes('%')) return undefined;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (text.includes(':') && ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  return undefined;
}

/**
 * A bare IP becomes /32 or /128; a CIDR keeps its address as written, so a non-canonical prefix such as
 * `10.1.2.3/8` is accepted and matches as the network 10.0.0.0/8 (netip.ParsePrefix + IpNet::contains).
 */
export function toCidr(value: string): CidrMatch | string {
  if (value.length === 0) return 'empty address';
  const slash = value.indexOf('/');
  if (slash >= 0) {
    const ip = parseIp(value.slice(0, slash));
    const lenText = value.slice(slash + 1);
    if (!ip) return 'not an IP address';
    if (!/^(0|[1-9][0-9]*)$/.test(lenText)) return 'bad prefix length';
    const length = Number(lenText);
    const max = ip.kind() === 'ipv4' ? 32 : 128;
    if (length > max) return `prefix length ${length} is above ${max}`;
    return { address: ip.toString(), length };
  }
  const ip = parseIp(value);
  if (!ip) return 'not an IP address';
  return { address: ip.toString(), length: ip.kind() === 'ipv4' ? 32 : 128 };
}

export function toCidrs(values: readonly string[] | undefined): Converted<CidrMatch> {
  const out: Converted<CidrMatch> = { values: [], rejected: [] };
  for (const v of values ?? []) {
    // istiod: `if len(m) == 0 { continue }`; still reported, a blank entry is almost surely a mistake.
    const c = toCidr(v);
    if (typeof c === 'string') out.rejected.push({ value: v, reason: c });
    else out.values.push(c);
  }
  return out;
}

/** `ns/sa` or a bare `sa` meaning the policy's own namespace (strings.Cut on the first "/"). */
export function toServiceAccountMatches(
  values: readonly string[] | undefined,
  policyNamespace: string,
): ServiceAccountMatch[] {
  return (values ?? []).map((v) => {
    const slash = v.indexOf('/');
    if (slash >= 0) return { namespace: v.slice(0, slash), serviceAccount: v.slice(slash + 1) };
    return { namespace: policyNamespace, serviceAccount: v };
  });
}

/** Go strconv.ParseBool, used by istiod for the `istio.io/dry-run` annotation. */
export function parseGoBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return undefined;
}

export function formatStringMatch(m: StringMatch): string {
  if ('presence' in m) return '*';
  if ('prefix' in m) return `${m.prefix}*`;
  if ('suffix' in m) return `*${m.suffix}`;
  return m.exact;
}
