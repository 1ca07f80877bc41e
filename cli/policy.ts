// `ambit policy check`: explain before you apply. Loads a manifests directory into the same MeshState the
// data path uses, and prints what the destination ztunnel would decide for one connection — the deciding
// policy and rule, ztunnel's reason text, and every L7 rule the L4 compilation dropped or narrowed.
// Exit code 0 whether allowed or denied; 2 only for bad input (istioctl-style: the answer is not an error).
import { statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { InvalidSpiffeId, parseIdentityArg, type SpiffeId } from '../core/identity/spiffe.js';
import { parseIp } from '../core/policy/convert.js';
import type { RequestContext } from '../core/policy/evaluate.js';
import { ExplainInputError, type Explanation, explain } from '../core/policy/explain.js';
import {
  DEFAULT_PATH_NORMALIZATION,
  PATH_NORMALIZATIONS,
  RequestTargetError,
  isPathNormalization,
  parseRequestTarget,
} from '../core/http/request-target.js';
import { loadManifestDirectory, ManifestDirectoryError } from '../core/sources/manifests.js';

export interface PolicyCheckOptions {
  manifests: string;
  sourceIdentity: string;
  sourceIp: string;
  destination: string;
  output?: string;
  timings?: boolean;
  /** Request attributes for the waypoint's L7 policies. */
  method?: string;
  path?: string;
  host?: string;
  header?: string[];
  /** How the waypoint normalizes paths before matching (its --path-normalization). Default BASE. */
  pathNormalization?: string;
}

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const defaultIo: CliIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** Bad CLI input: the message names the flag and what is wrong. */
export class PolicyCheckInputError extends Error {
  readonly code = 'POLICY_CHECK_BAD_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'PolicyCheckInputError';
  }
}

function requestOf(o: PolicyCheckOptions): RequestContext | undefined {
  const headers: Record<string, string> = {};
  for (const h of o.header ?? []) {
    const m = /^([^:=\s]+)\s*[:=]\s*(.*)$/.exec(h);
    if (!m)
      throw new PolicyCheckInputError(`--header ${JSON.stringify(h)}: expected name=value or "name: value"`);
    headers[m[1]!.toLowerCase()] = m[2]!;
  }
  // The waypoint matches the NORMALIZED path (core/http/request-target.ts): explain the same one.
  const mode = o.pathNormalization ?? DEFAULT_PATH_NORMALIZATION;
  if (!isPathNormalization(mode))
    throw new PolicyCheckInputError(
      `--path-normalization ${JSON.stringify(mode)}: expected ${PATH_NORMALIZATIONS.join(' | ')}`,
    );
  let path = o.path;
  if (path?.startsWith('/')) {
    try {
      path = parseRequestTarget(path, mode, o.method ?? 'GET').path;
    } catch (err) {
      if (err instanceof RequestTargetError)
        throw new PolicyCheckInputError(
          `--path ${JSON.stringify(o.path)}: the waypoint answers 400: ${err.message}`,
        );
      throw err;
    }
  }
  const r: RequestContext = {
    ...(o.method ? { method: o.method } : {}),
    ...(path ? { path } : {}),
    ...(o.host ? { host: o.host } : {}),
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
  };
  if (o.path !== undefined && !o.path.startsWith('/')) {
    throw new PolicyCheckInputError(`--path ${JSON.stringify(o.path)}: must start with "/"`);
  }
  return Object.keys(r).length > 0 ? r : undefined;
}

function validate(o: PolicyCheckOptions): { identity: SpiffeId | undefined; output: 'text' | 'json' } {
  const output = o.output ?? 'text';
  if (output !== 'text' && output !== 'json') {
    throw new PolicyCheckInputError(`-o ${JSON.stringify(output)}: expected "json" or "text"`);
  }
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(o.manifests);
  } catch {
    st = undefined;
  }
  if (!st?.isDirectory())
    throw new PolicyCheckInputError(`-m ${JSON.stringify(o.manifests)}: not a directory`);
  let identity: SpiffeId | undefined;
  try {
    identity = parseIdentityArg(o.sourceIdentity);
  } catch (e) {
    if (e instanceof InvalidSpiffeId) {
      throw new PolicyCheckInputError(
        `--source-identity ${JSON.stringify(o.sourceIdentity)}: ${e.reason} (use spiffe://<td>/ns/<ns>/sa/<sa>, <ns>/<sa> or none)`,
      );
    }
    throw e;
  }
  if (!parseIp(o.sourceIp)) {
    throw new PolicyCheckInputError(`--source-ip ${JSON.stringify(o.sourceIp)}: not an IP address`);
  }
  return { identity, output };
}

function json(e: Explanation, timings?: Record<string, number>): string {
  return JSON.stringify(
    {
      decision: e.decision.allow ? 'ALLOW' : 'DENY',
      reason: e.decision.reason,
      policy: e.decision.policy ?? null,
      rule: e.decision.rule ?? null,
      dropped: e.dropped,
      decidingEndpoint: e.decidingEndpoint,
      enforcedAt: e.enforcedAt,
      waypoint: e.waypoint
        ? {
            name: e.waypoint.name,
            identity: e.waypoint.identity,
            address: e.waypoint.address,
            policies: e.waypoint.policies,
            decision: e.waypoint.decision.allow ? 'ALLOW' : 'DENY',
            reason: e.waypoint.decision.reason,
            policy: e.waypoint.decision.policy ?? null,
            rule: e.waypoint.decision.rule ?? null,
            requestGiven: e.waypoint.requestGiven,
          }
        : null,
      source: e.source,
      destination: e.destination,
      endpoints: e.endpoints.map((ep) => ({
        workload: ep.workload,
        targetPort: ep.targetPort,
        decision: ep.decision.allow ? 'ALLOW' : 'DENY',
        reason: ep.decision.reason,
        policy: ep.decision.policy ?? null,
        rule: ep.decision.rule ?? null,
        policies: ep.policies,
        dryRun: ep.decision.dryRun,
      })),
      warnings: e.warnings,
      ...(timings ? { timings } : {}),
    },
    null,
    2,
  );
}

function text(e: Explanation, io: CliIo): void {
  const d = e.decision;
  io.out(`${d.allow ? 'ALLOW' : 'DENY'}  ${d.reason}`);
  if (d.policy) io.out(`  policy: ${d.policy}  rule: ${d.rule ?? '-'}`);
  io.out(`  decided at: ${e.enforcedAt} (${e.decidingEndpoint})`);
  io.out(
    `  source: ${e.source.identity ?? 'none (plaintext)'}  ip ${e.source.ip}${e.source.workload ? ` (${e.source.workload})` : ''}`,
  );
  const dst = e.destination;
  if (dst.kind === 'service') {
    io.out(`  destination: service ${dst.service} (${dst.hostname}) port ${dst.servicePort}, by ${dst.via}`);
  } else io.out(`  destination: workload at ${dst.address}:${dst.port}`);
  if (e.waypoint) {
    const w = e.waypoint;
    const r = w.decision;
    io.out(
      `  waypoint ${w.name} (${w.identity}): ${r.allow ? 'ALLOW' : 'DENY'}  ${r.reason}${r.rule !== undefined ? ` (rule ${r.rule})` : ''}  [${w.policies.length} targetRefs policies]`,
    );
    io.out(
      `    the destination ztunnel sees ${w.identity}${w.address ? ` from ${w.address}` : ''} as the client`,
    );
  }
  io.out(`  endpoints evaluated (${e.endpoints.length}):`);
  for (const ep of e.endpoints) {
    const r = ep.decision;
    const w = ep.workload;
    io.out(
      `    ${w.namespace}/${w.name} ${w.address}:${ep.targetPort}  ${r.allow ? 'ALLOW' : 'DENY'}  ${r.reason}${r.rule !== undefined ? ` (rule ${r.rule})` : ''}  [${ep.policies.length} policies apply]`,
    );
    for (const dr of r.dryRun)
      io.out(`      ${dr.message}: ${dr.policy}${dr.rule !== undefined ? ` rule ${dr.rule}` : ''}`);
  }
  if (e.dropped.length > 0) {
    io.out('  L7 rules dropped or narrowed at L4:');
    for (const x of e.dropped) {
      io.out(`    ${x.policy} rules[${x.rule}] ${x.kind}: ${x.fields.join(', ')}`);
      io.out(`      ${x.message}`);
    }
  } else io.out('  L7 rules dropped or narrowed at L4: none');
  if (e.warnings.length > 0) {
    io.out('  warnings:');
    for (const w of e.warnings) io.out(`    ${w}`);
  }
}

/** The command's action; returns the exit code (0 allow or deny, 2 bad input). */
export async function runPolicyCheck(o: PolicyCheckOptions, io: CliIo = defaultIo): Promise<number> {
  try {
    const { identity, output } = validate(o);
    const request = requestOf(o);
    const t0 = performance.now();
    const loaded = await loadManifestDirectory(o.manifests);
    const t1 = performance.now();
    // A bad manifest does not stop the check: the rest of the state serves, as in the running mesh.
    // Warnings of policies that do not apply to this destination are left out; explain reports the relevant ones.
    for (const problem of loaded.errors) io.err(`ambit: warning: rejected: ${problem.message}`);
    const e = explain(loaded.state, {
      ...(identity ? { sourceIdentity: identity } : {}),
      sourceIp: o.sourceIp,
      destination: o.destination,
      ...(request ? { request } : {}),
    });
    const t2 = performance.now();
    if (output === 'json') {
      io.out(json(e, o.timings ? { loadMs: t1 - t0, decisionMs: t2 - t1 } : undefined));
    } else text(e, io);
    return 0;
  } catch (err) {
    if (
      err instanceof PolicyCheckInputError ||
      err instanceof ExplainInputError ||
      err instanceof ManifestDirectoryError
    ) {
      io.err(`ambit policy check: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

export function registerPolicy(program: Command): void {
  const policy = new Command('policy').description('L4 authorization policy tools');
  policy
    .command('check')
    .description('what would the destination ztunnel decide for this connection, and why')
    .requiredOption('-m, --manifests <dir>', 'directory of Kubernetes/Istio YAML manifests')
    .requiredOption('--source-identity <id>', 'spiffe://<td>/ns/<ns>/sa/<sa>, <ns>/<sa>, or none (plaintext)')
    .requiredOption('--source-ip <ip>', 'client IP address')
    .requiredOption(
      '--destination <dest>',
      '<ip:port> (pod IP or service VIP) or <svc.ns:port> (service port)',
    )
    .option('-o, --output <format>', 'text or json', 'text')
    .option('--method <method>', 'HTTP method, for waypoint (targetRefs) policies')
    .option('--path <path>', 'HTTP path, for waypoint policies')
    .option('--host <host>', 'HTTP host / :authority, for waypoint policies')
    .option(
      '--path-normalization <mode>',
      "the waypoint's path normalization: NONE | BASE | MERGE_SLASHES | DECODE_AND_MERGE_SLASHES",
      DEFAULT_PATH_NORMALIZATION,
    )
    .option(
      '--header <name=value>',
      'HTTP header, repeatable, for waypoint policies',
      (v: string, acc: string[] = []) => [...acc, v],
    )
    .addOption(new Option('--timings', 'include load/decision times in json output').hideHelp())
    .exitOverride((e) => {
      // Usage errors are bad input too: exit 2, never the 1 commander uses by default.
      process.exit(e.exitCode === 0 ? 0 : 2);
    })
    .action(async (opts: PolicyCheckOptions) => {
      process.exitCode = await runPolicyCheck(opts);
    });
  program.addCommand(policy);
}
