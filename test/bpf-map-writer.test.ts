// The agent's map writes land in the kernel identically through the in-process bpf(2) addon and
// through bpftool (the fallback), on a real pinned map.
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MapWriter } from '../bpf-redirect/agent/map-writer.js';
import { svcKey, svcValue } from '../bpf-redirect/agent/service-lb.js';
import { ensureBpffs, randomPrefix, run } from './harness/topology.js';

const root = process.getuid?.() === 0;
const objDir = resolve(import.meta.dirname, '../bpf-redirect/build');

describe.skipIf(!root)('pinned map writes (MapWriter)', () => {
  const pinDir = `/sys/fs/bpf/${randomPrefix()}-mapwriter`;
  const mapPin = join(pinDir, 'maps', 'ambit_svcs');
  beforeAll(async () => {
    await ensureBpffs();
    await run('bpftool', [
      'prog',
      'loadall',
      join(objDir, 'sock_connect.bpf.o'),
      pinDir,
      'type',
      'cgroup/connect4',
      'pinmaps',
      join(pinDir, 'maps'),
    ]);
  });
  afterAll(() => rmSync(pinDir, { recursive: true, force: true }));

  const dump = async () => {
    const out = JSON.parse((await run('bpftool', ['-j', 'map', 'dump', 'pinned', mapPin])).stdout) as {
      key: string[];
      value: string[];
    }[];
    return new Map(
      out.map((e) => [
        e.key.map((h) => h.slice(2).padStart(2, '0')).join(''),
        e.value.map((h) => h.slice(2).padStart(2, '0')).join(''),
      ]),
    );
  };

  for (const viaAddon of [true, false]) {
    it(`updates and deletes entries via ${viaAddon ? 'the in-process addon' : 'bpftool'}`, async () => {
      const saved = process.env.AMBIT_BPF_NO_ADDON;
      if (!viaAddon) process.env.AMBIT_BPF_NO_ADDON = '1';
      const writer = new MapWriter(objDir);
      if (saved === undefined) delete process.env.AMBIT_BPF_NO_ADDON;
      else process.env.AMBIT_BPF_NO_ADDON = saved;
      expect(writer.method).toBe(viaAddon ? 'syscall' : 'bpftool');
      try {
        const a = { key: svcKey('10.96.0.1', 80), value: svcValue([{ ip: '10.244.1.2', port: 8080 }]) };
        const b = { key: svcKey('10.96.0.2', 443), value: svcValue([{ ip: '10.244.1.3', port: 8443 }]) };
        await writer.apply([
          { pin: mapPin, ...a },
          { pin: mapPin, ...b },
        ]);
        let m = await dump();
        expect(m.get(a.key.toString('hex'))).toBe(a.value.toString('hex'));
        expect(m.get(b.key.toString('hex'))).toBe(b.value.toString('hex'));
        // Deleting a present and an absent key: no error, only the present one goes.
        await writer.apply([
          { pin: mapPin, key: a.key },
          { pin: mapPin, key: svcKey('10.96.9.9', 1) },
        ]);
        m = await dump();
        expect(m.has(a.key.toString('hex'))).toBe(false);
        expect(m.has(b.key.toString('hex'))).toBe(true);
        await writer.apply([{ pin: mapPin, key: b.key }]);
        expect((await dump()).size).toBe(0);
      } finally {
        writer.close();
      }
    });
  }

  it('names the map when a pin does not exist', async () => {
    const writer = new MapWriter(objDir);
    try {
      await expect(
        writer.apply([{ pin: `${pinDir}/nope`, key: svcKey('10.96.0.1', 80), value: svcValue([]) }]),
      ).rejects.toThrow(/nope/);
    } finally {
      writer.close();
    }
  });
});
