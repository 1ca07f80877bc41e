import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConnectionManager } from './connection-manager.js';
import { Drain } from './drain.js';

const log = pino({ level: 'silent' });

function conn(cm: ConnectionManager, id: number, podIp: string, denied: () => string | undefined) {
  const closed: string[] = [];
  const untrack = cm.track({
    id,
    direction: 'inbound',
    podIp,
    recheck: denied,
    close: (reason) => {
      closed.push(reason);
      untrack();
    },
  });
  return { closed, untrack };
}

describe('ConnectionManager', () => {
  it('re-checks live connections and closes exactly the ones a policy change now denies', () => {
    const cm = new ConnectionManager(log);
    let denyPort = false;
    const a = conn(cm, 1, '10.0.0.1', () => (denyPort ? 'explicitly denied by: demo/deny' : undefined));
    const b = conn(cm, 2, '10.0.0.2', () => undefined);
    expect(cm.recheckAll()).toBe(0);
    denyPort = true;
    expect(cm.recheckAll()).toBe(1);
    expect(a.closed).toEqual(['connection closed due to policy change: explicitly denied by: demo/deny']);
    expect(b.closed).toEqual([]);
    expect(cm.countsByPod()).toEqual(new Map([['10.0.0.2', 1]]));
  });

  it('fails closed when a re-check throws', () => {
    const cm = new ConnectionManager(log);
    const a = conn(cm, 1, '10.0.0.1', () => {
      throw new Error('bad policy');
    });
    cm.recheckAll();
    expect(a.closed[0]).toContain('policy re-check failed: bad policy');
  });
});

describe('Drain', () => {
  it('goes unready first, stops accepting, waits for connections to finish, then reports clean', async () => {
    const cm = new ConnectionManager(log);
    const events: string[] = [];
    const c = conn(cm, 1, '10.0.0.1', () => undefined);
    const drain = new Drain({
      deadlineMs: 5000,
      connections: cm,
      acceptors: () => [{ stopAccepting: () => void events.push('stop accepting') }],
      setReady: (r) => events.push(`ready=${r}`),
      log,
    });
    const done = drain.run('SIGTERM');
    expect(drain.draining).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    c.untrack();
    expect(await done).toEqual({ clean: true, forced: 0 });
    expect(events).toEqual(['ready=false', 'stop accepting']);
  });

  it('force-closes what is left at the deadline', async () => {
    const cm = new ConnectionManager(log);
    const c = conn(cm, 1, '10.0.0.1', () => undefined);
    const drain = new Drain({
      deadlineMs: 50,
      connections: cm,
      acceptors: () => [],
      setReady: () => {},
      log,
    });
    expect(await drain.run('SIGTERM')).toEqual({ clean: false, forced: 1 });
    expect(c.closed).toEqual(['connection closed: drain deadline reached']);
  });
});
