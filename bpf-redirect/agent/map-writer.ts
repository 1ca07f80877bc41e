// Writes to pinned BPF maps. In-process through the tiny ambit_bpfmap addon (native/bpf_map.c: the
// bpf(2) syscall, 4-7 µs a write) when it is built, else one `bpftool batch` per call (~3 ms plus
// ~15 µs a write, docs/capture.md §5). Same semantics either way: update = BPF_ANY, delete
// of an absent key is not an error.
import { existsSync } from 'node:fs';
import { closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { runCommand } from './command.js';
import { BpfAgentError } from './errors.js';
import { hexArgs } from './maps.js';

export const MAP_ADDON = 'ambit_bpfmap.node';

interface BpfMapAddon {
  objGet(path: string): number;
  update(fd: number, key: Buffer, value: Buffer): void;
  remove(fd: number, key: Buffer): boolean;
}

/** One write: `value` set → update (insert or replace), absent → delete. */
export interface MapWrite {
  pin: string;
  key: Buffer;
  value?: Buffer;
}

export class MapWriter {
  private readonly addon: BpfMapAddon | undefined;
  private readonly fds = new Map<string, number>();

  /** `objDir`: where `npm run build:bpf` put the objects and the addon. */
  constructor(objDir: string) {
    const path = join(objDir, MAP_ADDON);
    if (existsSync(path) && process.env.AMBIT_BPF_NO_ADDON !== '1') {
      try {
        this.addon = createRequire(import.meta.url)(path) as BpfMapAddon;
      } catch {
        this.addon = undefined;
      }
    }
  }

  /** 'syscall' (in-process) or 'bpftool' (exec). */
  get method(): 'syscall' | 'bpftool' {
    return this.addon ? 'syscall' : 'bpftool';
  }

  private fd(pin: string): number {
    let fd = this.fds.get(pin);
    if (fd === undefined) {
      try {
        fd = this.addon!.objGet(pin);
      } catch (err) {
        throw new BpfAgentError('COMMAND_FAILED', `open pinned map ${pin}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      this.fds.set(pin, fd);
    }
    return fd;
  }

  async apply(writes: readonly MapWrite[]): Promise<void> {
    if (writes.length === 0) return;
    if (this.addon) {
      for (const w of writes) {
        try {
          if (w.value) this.addon.update(this.fd(w.pin), w.key, w.value);
          else this.addon.remove(this.fd(w.pin), w.key);
        } catch (err) {
          if (err instanceof BpfAgentError) throw err;
          throw new BpfAgentError('COMMAND_FAILED', `write to ${w.pin}: ${(err as Error).message}`, {
            cause: err,
          });
        }
      }
      return;
    }
    const args = (w: MapWrite): string[] =>
      w.value
        ? ['map', 'update', 'pinned', w.pin, 'key', ...hexArgs(w.key), 'value', ...hexArgs(w.value)]
        : ['map', 'delete', 'pinned', w.pin, 'key', ...hexArgs(w.key)];
    if (writes.length > 1) {
      try {
        await runCommand('bpftool', ['batch', 'file', '-'], {
          input: `${writes.map((w) => args(w).join(' ')).join('\n')}\n`,
        });
        return;
      } catch {
        // A batch stops at its first error (e.g. deleting an absent key): redo one by one.
      }
    }
    for (const w of writes) {
      await runCommand('bpftool', args(w)).catch((err: unknown) => {
        if (
          !(
            w.value === undefined &&
            err instanceof BpfAgentError &&
            /No such file|not found/i.test(err.message)
          )
        ) {
          throw err;
        }
      });
    }
  }

  /** Close map fds (pins may be removed afterwards; an open fd would keep the map alive). */
  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
