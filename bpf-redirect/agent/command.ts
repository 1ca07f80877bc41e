// Every kernel change the agent makes goes through a child process (`bpftool`, `tc`, `ip`, `nft`,
// `ss`): ~3 ms a call on this machine (docs/capture.md §5), no native code, and JSON output
// that parses directly. Each call has a timeout so a wedged tool cannot stall reconciliation.
import { execFile } from 'node:child_process';
import { BpfAgentError } from './errors.js';

export const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;

export interface CommandOptions {
  /** Written to the child's stdin (e.g. `nft -f -`, `bpftool batch file -`). */
  input?: string;
  timeoutMs?: number;
}

export function runCommand(cmd: string, args: readonly string[], opts: CommandOptions = {}): Promise<string> {
  const timeout = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) {
        resolve(String(stdout));
        return;
      }
      const e = err as NodeJS.ErrnoException & { killed?: boolean };
      const line = `${cmd} ${args.join(' ')}`.slice(0, 300);
      if (e.code === 'ENOENT') {
        reject(
          new BpfAgentError('COMMAND_MISSING', `${cmd}: not installed (needed for: ${line})`, { cause: err }),
        );
      } else if (e.killed) {
        reject(
          new BpfAgentError('COMMAND_TIMEOUT', `${line}: no answer after ${timeout} ms`, { cause: err }),
        );
      } else {
        const why = String(stderr).trim().split('\n').slice(-3).join(' | ') || e.message;
        reject(new BpfAgentError('COMMAND_FAILED', `${line}: ${why}`, { cause: err }));
      }
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Parse a tool's JSON output, failing with the tool's name rather than a bare SyntaxError. */
export function parseJson<T>(what: string, text: string): T {
  try {
    return JSON.parse(text.trim() || 'null') as T;
  } catch (err) {
    throw new BpfAgentError('COMMAND_FAILED', `${what}: output is not JSON: ${text.slice(0, 120)}`, {
      cause: err,
    });
  }
}
