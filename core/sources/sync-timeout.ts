// The first-sync deadline every Kubernetes-watching component takes (`--sync-timeout`, env
// KUBERNETES_SYNC_TIMEOUT): how long start-up may wait for the first complete list of every kind
// before it fails with a message saying so. istiod waits for its own cluster without a bound (its
// PILOT_REMOTE_CLUSTER_TIMEOUT covers remote clusters only); a bound that is too short restarts a
// healthy component in a large cluster forever, so the default is generous and bench/scale says
// what a cluster of a given size needs. Kept apart from kubernetes.ts so a CLI parses the flag
// without loading the Kubernetes client.

/** Default first-sync deadline: 120 s. */
export const DEFAULT_SYNC_TIMEOUT_MS = 120_000;

export const SYNC_TIMEOUT_ENV = 'KUBERNETES_SYNC_TIMEOUT';

export class SyncTimeoutConfigError extends Error {
  readonly code = 'BAD_SYNC_TIMEOUT';
  constructor(message: string) {
    super(message);
    this.name = 'SyncTimeoutConfigError';
  }
}

/** "90s", "5m", "1500ms", "1h" or plain seconds → ms (positive). `what` names the flag or variable. */
export function parseSyncTimeout(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms'] : 0;
  if (!m || !(ms > 0))
    throw new SyncTimeoutConfigError(
      `${what} ${JSON.stringify(text)} is not a duration (e.g. 120s, 5m, 1500ms)`,
    );
  return Math.round(ms);
}

/** The flag when given, else KUBERNETES_SYNC_TIMEOUT when set, else undefined (the default applies). */
export function syncTimeoutFrom(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): number | undefined {
  if (flag !== undefined) return parseSyncTimeout(flag, '--sync-timeout');
  const fromEnv = env[SYNC_TIMEOUT_ENV];
  return fromEnv ? parseSyncTimeout(fromEnv, SYNC_TIMEOUT_ENV) : undefined;
}

export const SYNC_TIMEOUT_HELP =
  'first-sync deadline of the Kubernetes lists, e.g. 120s, 5m (env KUBERNETES_SYNC_TIMEOUT, default 120s)';
