// Parent-side handles for the harness's child processes: an echo server and a long-lived pod client,
// each running inside a namespace of a Topology (and killed by its teardown).
import type { ChildProcess } from 'node:child_process';
import { distPath, HarnessError, type Topology } from './topology.js';

const START_TIMEOUT_MS = 10_000;

/** Wait for the child's first IPC message ({ready}) or fail with its stderr. */
export function waitReady(child: ChildProcess, what: string, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const timer = setTimeout(() => {
      cleanup();
      reject(new HarnessError('START_TIMEOUT', `${what} not ready after ${timeoutMs} ms: ${stderr.trim()}`));
    }, timeoutMs);
    const onMessage = (msg: { ready?: unknown }) => {
      if (msg && msg.ready !== undefined) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new HarnessError('START_FAILED', `${what} exited (${code}) before ready: ${stderr.trim()}`));
    };
    function cleanup(): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Start a line-echo server (answers `whoami` with its view of peer and local address) in `ns`. */
export async function startEchoServer(topo: Topology, ns: string, ports: number[]): Promise<ChildProcess> {
  const child = topo.spawnNode(ns, 'test/harness/echo-server.ts', ports.map(String));
  await waitReady(child, `echo server in ${ns}`);
  return child;
}

export interface ConnectResult {
  ok: boolean;
  conn?: number;
  error?: string;
  local?: string;
  remote?: string;
}
export interface SendResult {
  ok: boolean;
  line?: string;
  error?: string;
}

/** A TCP client process inside a pod, driven over IPC; connections stay open between calls. */
export class PodClient {
  private nextId = 1;
  private readonly pending = new Map<number, (msg: Record<string, unknown>) => void>();

  private constructor(readonly child: ChildProcess) {
    child.on('message', (msg: Record<string, unknown>) => {
      const id = msg.id as number | undefined;
      if (id === undefined) return;
      this.pending.get(id)?.(msg);
      this.pending.delete(id);
    });
  }

  /** Start the client in netns `ns`; with `cgroup` (a cgroup v2 directory) it runs in that cgroup,
   *  as a container's processes do (cgroup hooks such as connect4 then apply to it). */
  static async start(topo: Topology, ns: string, opts: { cgroup?: string } = {}): Promise<PodClient> {
    const child = opts.cgroup
      ? topo.spawnIn(
          ns,
          'sh',
          [
            '-c',
            'echo $$ > "$0/cgroup.procs" && exec "$@"',
            opts.cgroup,
            process.execPath,
            distPath('test/harness/pod-client.ts'),
          ],
          { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
        )
      : topo.spawnNode(ns, 'test/harness/pod-client.ts');
    await waitReady(child, `pod client in ${ns}`);
    return new PodClient(child);
  }

  private request<T>(msg: Record<string, unknown>, timeoutMs: number): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new HarnessError(
            'CLIENT_TIMEOUT',
            `pod client did not answer ${String(msg.op)} in ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs + 2000);
      this.pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m as T);
      });
      this.child.send({ ...msg, id });
    });
  }

  /** connect() to host:port; resolves {ok:false, error:'ETIMEDOUT'|'ECONNREFUSED'|...} on failure. */
  connect(host: string, port: number, opts: { timeoutMs?: number; localAddress?: string } = {}) {
    const timeoutMs = opts.timeoutMs ?? 3000;
    return this.request<ConnectResult>(
      { op: 'connect', host, port, timeoutMs, localAddress: opts.localAddress },
      timeoutMs,
    );
  }

  /** Send one line on an open connection and wait for the one-line answer. */
  send(conn: number, line: string, timeoutMs = 3000) {
    return this.request<SendResult>({ op: 'send', conn, line, timeoutMs }, timeoutMs);
  }

  close(conn: number) {
    return this.request<{ ok: boolean }>({ op: 'close', conn }, 2000);
  }

  /** connect + `whoami` + close: what the server saw as peer, or the error. */
  async whoami(
    host: string,
    port: number,
    timeoutMs = 3000,
  ): Promise<{ ok: boolean; line?: string; error?: string }> {
    const c = await this.connect(host, port, { timeoutMs });
    if (!c.ok || c.conn === undefined) return { ok: false, error: c.error };
    const r = await this.send(c.conn, 'whoami', timeoutMs);
    await this.close(c.conn);
    return r;
  }
}
