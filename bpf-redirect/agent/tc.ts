// tc clsact ingress attachment of the pinned `steer` program. The clsact qdisc is shared with other
// tools (a CNI's own programs live there too), so we only ever add/replace/delete OUR filter, by
// pref + handle (docs/capture.md §5); a qdisc is deleted only if this agent created it and nothing
// else is attached to it. `tc filter replace` swaps programs atomically (upgrade without a gap).
import { parseJson, runCommand } from './command.js';
import { BpfAgentError } from './errors.js';

interface TcFilterJson {
  pref?: number;
  kind?: string;
  options?: { handle?: string; bpf_name?: string; prog?: { id?: number; name?: string; tag?: string } };
}

export interface AttachedFilter {
  dev: string;
  progId: number | undefined;
  progName: string | undefined;
}

/** Adds clsact to `dev` if missing; true when this call created it. */
export async function ensureClsact(dev: string): Promise<boolean> {
  try {
    await runCommand('tc', ['qdisc', 'add', 'dev', dev, 'clsact']);
    return true;
  } catch (err) {
    if (err instanceof BpfAgentError && /File exists|Exclusivity flag on/i.test(err.message)) return false;
    throw err;
  }
}

export type TcDirection = 'ingress' | 'egress';

export async function attachIngress(
  dev: string,
  progPin: string,
  pref: number,
  handle: number,
  direction: TcDirection = 'ingress',
): Promise<void> {
  await runCommand('tc', [
    'filter',
    'replace',
    'dev',
    dev,
    direction,
    'pref',
    String(pref),
    'handle',
    String(handle),
    'bpf',
    'da',
    'pinned',
    progPin,
  ]);
}

async function filters(dev: string, direction: 'ingress' | 'egress'): Promise<TcFilterJson[]> {
  try {
    return (
      parseJson<TcFilterJson[]>(
        'tc filter show',
        await runCommand('tc', ['-j', 'filter', 'show', 'dev', dev, direction]),
      ) ?? []
    );
  } catch (err) {
    if (err instanceof BpfAgentError && /Cannot find device|does not exist/i.test(err.message)) return [];
    throw err;
  }
}

/** Our filter on dev's ingress (pref + handle), if any, from `tc -j filter show`. */
export async function ourFilter(
  dev: string,
  pref: number,
  handle: number,
): Promise<AttachedFilter | undefined> {
  const f = (await filters(dev, 'ingress')).find(
    (x) => x.pref === pref && x.kind === 'bpf' && x.options && Number(x.options.handle) === handle,
  );
  if (!f) return undefined;
  return { dev, progId: f.options?.prog?.id, progName: f.options?.prog?.name };
}

export async function detachIngress(
  dev: string,
  pref: number,
  handle: number,
  direction: TcDirection = 'ingress',
): Promise<void> {
  try {
    await runCommand('tc', [
      'filter',
      'del',
      'dev',
      dev,
      direction,
      'pref',
      String(pref),
      'handle',
      String(handle),
      'bpf',
    ]);
  } catch (err) {
    // Veth already gone with its pod, or the filter was never there: nothing to remove.
    if (
      err instanceof BpfAgentError &&
      /Cannot find|No such file|not found|Invalid handle/i.test(err.message)
    )
      return;
    throw err;
  }
}

/** Delete the clsact qdisc only if no filter of anyone remains on it (caller: only qdiscs we created). */
export async function deleteClsactIfEmpty(dev: string): Promise<boolean> {
  const left = [...(await filters(dev, 'ingress')), ...(await filters(dev, 'egress'))];
  if (left.length > 0) return false;
  try {
    await runCommand('tc', ['qdisc', 'del', 'dev', dev, 'clsact']);
    return true;
  } catch (err) {
    if (err instanceof BpfAgentError && /Cannot find device|Invalid handle|No such file/i.test(err.message))
      return false;
    throw err;
  }
}
