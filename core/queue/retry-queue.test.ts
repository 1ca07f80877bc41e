import { describe, expect, it } from 'vitest';
import { RetryQueue } from './retry-queue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RetryQueue', () => {
  it('works on a key once however often it is added in one burst', async () => {
    const seen: string[] = [];
    const q = new RetryQueue({ work: async (k) => void seen.push(k) });
    for (let i = 0; i < 5; i++) q.add('a');
    q.add('b');
    await q.idle();
    expect(seen).toEqual(['a', 'b']);
    await q.stop();
  });

  it('retries a failing key with doubling delays, capped, and resets the delay on success', async () => {
    let failures = 3;
    const delays: number[] = [];
    const done: string[] = [];
    const q = new RetryQueue({
      firstRetryMs: 10,
      maxRetryMs: 25,
      work: async (k) => {
        if (failures-- > 0) throw new Error('api down');
        done.push(k);
      },
      onError: (_k, _e, ms) => delays.push(ms),
    });
    q.add('ns/gw');
    for (let i = 0; i < 100 && done.length === 0; i++) await sleep(5);
    expect(delays).toEqual([10, 20, 25]);
    expect(done).toEqual(['ns/gw']);
    failures = 1;
    q.add('ns/gw');
    for (let i = 0; i < 100 && done.length === 1; i++) await sleep(5);
    expect(delays).toEqual([10, 20, 25, 10]);
    await q.stop();
  });

  it('folds adds of a key that is backing off into its retry, and stop() cancels the retry', async () => {
    let calls = 0;
    const q = new RetryQueue({
      firstRetryMs: 60_000,
      work: async () => {
        calls++;
        throw new Error('forbidden');
      },
    });
    q.add('k');
    await q.idle();
    expect(q.backingOff('k')).toBe(true);
    q.add('k');
    await q.idle();
    expect(calls).toBe(1);
    await q.stop();
    expect(q.backingOff('k')).toBe(false);
    q.add('k');
    await q.idle();
    expect(calls).toBe(1);
  });
});
