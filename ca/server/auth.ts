// Who is calling the CA, and what it may ask for.
// Authentication (istio/istio security/pkg/server/ca/authenticate): `authorization: Bearer <token>`
// → caller identity. Kubernetes mode uses TokenReview (issue 7) behind the same Authenticator
// interface; local mode reads a token file.
// Authorization (istio/istio security/pkg/server/ca/server.go + node_auth.go): without
// ImpersonatedIdentity the caller gets only its own identity; with it, only callers whose
// <ns>/<sa> is in CA_TRUSTED_NODE_ACCOUNTS, and only for an identity with a pod on the caller's node.
import { promises as fs } from 'node:fs';
import YAML from 'yaml';
import { MAX_ALIASES, YamlLimitError, readLimitedFile } from '../../core/sources/yaml-limits.js';
import { z } from 'zod';
import { type SpiffeId, formatSpiffeId, parseSpiffeId } from '../../core/identity/spiffe.js';
import { CaError, PermissionDenied, Unauthenticated } from '../errors.js';

export interface CallerIdentity {
  identity: SpiffeId;
  /** The node the caller runs on (node proxies); required for impersonation. */
  node?: string;
  /** Pod name/uid when the authenticator knows them (bound Kubernetes tokens). */
  pod?: { name: string; uid?: string };
}

export interface Authenticator {
  /** Resolves a bearer token; throws Unauthenticated for a missing/unknown/expired token. */
  authenticate(token: string | undefined): Promise<CallerIdentity>;
}

/** Answers "does any pod with this identity run on that node?" — MeshState implements exactly this. */
export interface PodLocator {
  hasWorkloadWithIdentityOnNode(identity: SpiffeId, node: string): boolean;
}

// Token file, YAML or JSON:
//   tokens:
//     - token: "s3cr3t"
//       identity: spiffe://cluster.local/ns/istio-system/sa/ztunnel
//       node: node-a            # optional; needed to impersonate workloads on that node
const TokenFileSchema = z
  .object({
    tokens: z.array(
      z
        .object({
          token: z.string().min(16, 'token must be at least 16 characters'),
          identity: z.string(),
          node: z.string().min(1).optional(),
          pod: z.string().min(1).optional(),
        })
        .strict(),
    ),
  })
  .strict();

export class InvalidTokenFile extends CaError {
  constructor(message: string) {
    super('INVALID_CA_MATERIAL', message);
    this.name = 'InvalidTokenFile';
  }
}

export function parseTokenFile(text: string, where: string): Map<string, CallerIdentity> {
  let doc: unknown;
  try {
    // Alias expansion bounded like every YAML reader (core/sources/yaml-limits.ts, CVE-2019-11253).
    doc = YAML.parse(text, { maxAliasCount: MAX_ALIASES });
  } catch (err) {
    throw new InvalidTokenFile(`${where}: not valid YAML/JSON: ${(err as Error).message}`);
  }
  const parsed = TokenFileSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidTokenFile(`${where}: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  const out = new Map<string, CallerIdentity>();
  parsed.data.tokens.forEach((t, i) => {
    let identity: SpiffeId;
    try {
      identity = parseSpiffeId(t.identity);
    } catch (err) {
      throw new InvalidTokenFile(`${where}: tokens.${i}.identity: ${(err as Error).message}`);
    }
    if (out.has(t.token)) throw new InvalidTokenFile(`${where}: tokens.${i}.token: duplicate token`);
    out.set(t.token, {
      identity,
      ...(t.node ? { node: t.node } : {}),
      ...(t.pod ? { pod: { name: t.pod } } : {}),
    });
  });
  return out;
}

/** Local mode: tokens from a file, re-read when its mtime changes (so tokens rotate without restart). */
export class TokenFileAuthenticator implements Authenticator {
  private cache: { mtimeMs: number; size: number; tokens: Map<string, CallerIdentity> } | undefined;

  constructor(readonly path: string) {}

  private async tokens(): Promise<Map<string, CallerIdentity>> {
    const st = await fs.stat(this.path);
    if (this.cache && this.cache.mtimeMs === st.mtimeMs && this.cache.size === st.size)
      return this.cache.tokens;
    let text: string;
    try {
      text = await readLimitedFile(this.path);
    } catch (err) {
      if (err instanceof YamlLimitError) throw new InvalidTokenFile(err.message);
      throw err;
    }
    const tokens = parseTokenFile(text, this.path);
    this.cache = { mtimeMs: st.mtimeMs, size: st.size, tokens };
    return tokens;
  }

  /** Loads the file now so a bad file fails the start, not the first request. */
  async check(): Promise<void> {
    await this.tokens();
  }

  async authenticate(token: string | undefined): Promise<CallerIdentity> {
    if (!token) throw new Unauthenticated('request authenticate failure: no bearer token');
    let tokens: Map<string, CallerIdentity>;
    try {
      tokens = await this.tokens();
    } catch (err) {
      // Fail closed: an unreadable token file authenticates nobody.
      throw new Unauthenticated(
        `request authenticate failure: token file unusable (${(err as Error).message})`,
      );
    }
    const caller = tokens.get(token);
    if (!caller) throw new Unauthenticated('request authenticate failure: unknown token');
    return caller;
  }
}

/** Static map authenticator (tests, embedded demo). */
export class StaticTokenAuthenticator implements Authenticator {
  constructor(private readonly tokens: Map<string, CallerIdentity>) {}
  async authenticate(token: string | undefined): Promise<CallerIdentity> {
    if (!token) throw new Unauthenticated('request authenticate failure: no bearer token');
    const caller = this.tokens.get(token);
    if (!caller) throw new Unauthenticated('request authenticate failure: unknown token');
    return caller;
  }
}

/** Extracts the token from an `authorization` header value ("Bearer <token>", case-insensitive scheme). */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

export const DEFAULT_TRUSTED_NODE_ACCOUNTS = ['istio-system/ztunnel'];

/** Parses CA_TRUSTED_NODE_ACCOUNTS ("ns/sa,ns2/sa2"). */
export function parseTrustedNodeAccounts(value: string): string[] {
  const out = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const a of out) {
    if (!/^[^/\s]+\/[^/\s]+$/.test(a))
      throw new Error(`CA_TRUSTED_NODE_ACCOUNTS: "${a}" is not <namespace>/<service-account>`);
  }
  return out;
}

export interface AuthorizationContext {
  trustedNodeAccounts: readonly string[];
  podLocator?: PodLocator | undefined;
}

/**
 * Decides which identity the caller may get a certificate for. Returns that identity or throws
 * PermissionDenied. `impersonated` is the parsed ImpersonatedIdentity, if any.
 */
export function authorizeIdentity(
  caller: CallerIdentity,
  impersonated: SpiffeId | undefined,
  ctx: AuthorizationContext,
): SpiffeId {
  if (!impersonated) return caller.identity;
  const account = `${caller.identity.namespace}/${caller.identity.serviceAccount}`;
  if (!ctx.trustedNodeAccounts.includes(account)) {
    throw new PermissionDenied(
      `caller ${formatSpiffeId(caller.identity)} is not a trusted node account and may not impersonate`,
    );
  }
  if (!ctx.podLocator)
    throw new PermissionDenied(
      `caller ${formatSpiffeId(caller.identity)} (node ${caller.node ?? '?'}) asked for ${formatSpiffeId(impersonated)}, but this CA does not know where pods run: start it with -m DIR (the manifests) or --kubernetes`,
    );
  if (!caller.node)
    throw new PermissionDenied(
      `caller ${formatSpiffeId(caller.identity)} has no known node; impersonation refused`,
    );
  if (!ctx.podLocator.hasWorkloadWithIdentityOnNode(impersonated, caller.node)) {
    throw new PermissionDenied(
      `no workload with identity ${formatSpiffeId(impersonated)} runs on node ${caller.node}`,
    );
  }
  return impersonated;
}

/**
 * Adapts core/state's MeshState (which keys the same question by the `spiffe://` URI string) to
 * the CA's PodLocator.
 */
export function podLocatorOf(state: {
  hasWorkloadWithIdentityOnNode(spiffeId: string, node: string): boolean;
}): PodLocator {
  return {
    hasWorkloadWithIdentityOnNode: (id, node) =>
      state.hasWorkloadWithIdentityOnNode(formatSpiffeId(id), node),
  };
}
