// ztunnel's loggers. pino children copy the parent's level when created and never follow it again,
// so the admin `/logging?level=` (istio/ztunnel admin.rs) must set the level on every logger we made.
import { type Logger, pino } from 'pino';

export type IstioLogLevel = 'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export class LoggerFamily {
  readonly root: Logger;
  private readonly children = new Set<Logger>();

  constructor(level: string, destination?: pino.DestinationStream) {
    const opts = { level: toPino(level), base: { component: 'ztunnel' } };
    this.root = destination ? pino(opts, destination) : pino(opts);
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
