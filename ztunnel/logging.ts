// ztunnel's loggers. pino children copy the parent's level when created and never follow it again,
// so the admin `/logging?level=` (istio/ztunnel admin.rs) must set the level on every logger we made.
import { type Logger, pino } from 'pino';
import { terminalLogStream } from '../core/telemetry/terminal-log.js';

export type IstioLogLevel = 'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export class LoggerFamily {
  readonly root: Logger;
  private readonly children = new Set<Logger>();
  private readonly stdout: ReturnType<typeof pino.destination> | undefined;

  constructor(level: string, destination?: pino.DestinationStream) {
    const opts = { level: toPino(level), base: { component: 'ztunnel' } };
    const terminal = destination ? undefined : terminalLogStream(1);
    if (destination || terminal) {
      this.root = pino(opts, destination ?? terminal);
    } else {
      // Asynchronous stdout: one access-log line per connection must not block the event loop on a
      // write(2) (a synchronous pino cost ~20% of the CPU per connection in bench/ztunnel). Lines written
      // while a write is in flight are coalesced; flush() on exit keeps the last ones.
      // Buffer up to 8 KiB (one write(2) for ~20 access-log lines under load) and flush at least every
      // 100 ms so a quiet ztunnel's lines still show up promptly.
      const stdout = pino.destination({ dest: 1, sync: false, minLength: 8 * 1024 });
      this.stdout = stdout;
      this.root = pino(opts, stdout);
      setInterval(() => {
        try {
          stdout.flush();
        } catch {
          // Still writing the previous batch; the next tick takes it.
        }
      }, 100).unref();
    }
  }

  /** Writes out buffered lines synchronously (before process exit). */
  flush(): void {
    try {
      this.stdout?.flushSync();
    } catch {
      // Nothing buffered, or stdout already gone.
    }
  }

  child(bindings: Record<string, unknown>): Logger {
    const c = this.root.child(bindings);
    this.children.add(c);
    return c;
  }

  get level(): IstioLogLevel {
    return toIstio(this.root.level);
  }

  setLevel(level: string): void {
    const l = toPino(level);
    this.root.level = l;
    for (const c of this.children) c.level = l;
  }
}

function toPino(level: string): string {
  return level === 'off' ? 'silent' : level;
}

function toIstio(level: string): IstioLogLevel {
  return (level === 'silent' ? 'off' : level) as IstioLogLevel;
}
