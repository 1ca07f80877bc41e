import { describe, expect, it } from 'vitest';
import type { Match } from '../state/model.js';
import { emptyMatch } from './compile.js';
import type { PeerAuthentication, PeerAuthenticationMode } from './istio-api.js';
import { compilePeerAuthentications } from './peer-authentication.js';

const opts = { rootNamespace: 'istio-system' };
const STATIC = 'istio-system/istio_converted_static_strict';

let clock = 0;
function pa(
  namespace: string,
  name: string,
  mode: PeerAuthenticationMode | undefined,
  extra: {
    selector?: Record<string, string>;
    ports?: Record<string, PeerAuthenticationMode>;
    created?: string;
  } = {},
): PeerAuthentication {
  clock++;
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: {
      name,
      namespace,
      creationTimestamp: extra.created ?? new Date(Date.UTC(2026, 0, 1, 0, 0, clock)).toISOString(),
    },
    spec: {
      ...(extra.selector ? { selector: { matchLabels: extra.selector } } : {}),
      ...(mode ? { mtls: { mode } } : {}),
      ...(extra.ports
        ? {
            portLevelMtls: Object.fromEntries(
              Object.entries(extra.ports).map(([p, mo]) => [p, { mode: mo }]),
            ),
          }
        : {}),
    },
  };
}

const wl = { uid: 'w1', namespace: 'ns1', labels: { app: 'web' } };
const m = (f: Partial<Match>): Match => ({ ...emptyMatch(), ...f });
const keysFor = (pas: PeerAuthentication[], w = wl) =>
  compilePeerAuthentications(pas, [w], opts).policiesByWorkload.get(w.uid) ?? [];

describe('compilePeerAuthentications: effective mode', () => {
  it('no PeerAuthentication: nothing referenced and no static policy', () => {
    const c = compilePeerAuthentications([], [wl], opts);
    expect(c.authorizations).toEqual([]);
    expect(c.policiesByWorkload.size).toBe(0);
  });

  it('mesh STRICT references the static policy: DENY not_principals presence', () => {
    const c = compilePeerAuthentications([pa('istio-system', 'default', 'STRICT')], [wl], opts);
    expect(c.policiesByWorkload.get('w1')).toEqual([STATIC]);
    const stat = c.authorizations.find((a) => a.name === 'istio_converted_static_strict');
    expect(stat).toMatchObject({ namespace: 'istio-system', scope: 'WORKLOAD_SELECTOR', action: 'DENY' });
    expect(stat?.rules).toEqual([{ clauses: [{ matches: [m({ notPrincipals: [{ presence: true }] })] }] }]);
  });

  it('namespace PERMISSIVE overrides mesh STRICT; UNSET inherits', () => {
    expect(keysFor([pa('istio-system', 'd', 'STRICT'), pa('ns1', 'n', 'PERMISSIVE')])).toEqual([]);
    expect(keysFor([pa('istio-system', 'd', 'STRICT'), pa('ns1', 'n', 'UNSET')])).toEqual([STATIC]);
    expect(keysFor([pa('istio-system', 'd', 'STRICT'), pa('ns1', 'n', undefined)])).toEqual([STATIC]);
  });

  it('workload beats namespace: STRICT workload in a PERMISSIVE namespace and vice versa', () => {
    expect(
      keysFor([pa('ns1', 'n', 'PERMISSIVE'), pa('ns1', 'w', 'STRICT', { selector: { app: 'web' } })]),
    ).toEqual([STATIC]);
    expect(
      keysFor([pa('ns1', 'n', 'STRICT'), pa('ns1', 'w', 'PERMISSIVE', { selector: { app: 'web' } })]),
    ).toEqual([]);
    // DISABLE behaves as PERMISSIVE for plaintext.
    expect(
      keysFor([pa('ns1', 'n', 'STRICT'), pa('ns1', 'w', 'DISABLE', { selector: { app: 'web' } })]),
    ).toEqual([]);
  });

  it('a selector that does not match the workload has no effect', () => {
    expect(
      keysFor([pa('ns1', 'n', 'STRICT'), pa('ns1', 'w', 'PERMISSIVE', { selector: { app: 'db' } })]),
    ).toEqual([STATIC]);
  });

  it('root-namespace selector policies are ignored', () => {
    expect(keysFor([pa('istio-system', 'sel', 'STRICT', { selector: { app: 'web' } })])).toEqual([]);
  });

  it('policies of another namespace do not apply', () => {
    expect(keysFor([pa('ns2', 'n', 'STRICT')])).toEqual([]);
  });

  it('oldest wins on conflicts at the same level', () => {
    const older = pa('ns1', 'old', 'PERMISSIVE', { created: '2020-01-01T00:00:00Z' });
    const newer = pa('ns1', 'new', 'STRICT', { created: '2025-01-01T00:00:00Z' });
    expect(keysFor([newer, older])).toEqual([]);
    const older2 = pa('ns1', 'old', 'STRICT', { created: '2020-01-01T00:00:00Z' });
    const newer2 = pa('ns1', 'new', 'PERMISSIVE', { created: '2025-01-01T00:00:00Z' });
    expect(keysFor([newer2, older2])).toEqual([STATIC]);
  });
});

describe('compilePeerAuthentications: portLevelMtls', () => {
  it('STRICT with a PERMISSIVE port: converted policy denies plaintext except on that port', () => {
    const c = compilePeerAuthentications(
      [pa('ns1', 'web-pa', 'STRICT', { selector: { app: 'web' }, ports: { '9090': 'PERMISSIVE' } })],
      [wl],
      opts,
    );
    expect(c.policiesByWorkload.get('w1')).toEqual(['ns1/converted_peer_authentication_web-pa']);
    const conv = c.authorizations.find((a) => a.name === 'converted_peer_authentication_web-pa');
    expect(conv).toMatchObject({ namespace: 'ns1', scope: 'WORKLOAD_SELECTOR', action: 'DENY' });
    expect(conv?.selector).toEqual({ app: 'web' });
    expect(conv?.rules).toEqual([
      {
        clauses: [
          { matches: [m({ notPrincipals: [{ presence: true }] })] },
          { matches: [m({ notDestinationPorts: [9090] })] },
        ],
      },
    ]);
  });

  it('PERMISSIVE with STRICT ports: one group per strict port', () => {
    const c = compilePeerAuthentications(
      [
        pa('ns1', 'web-pa', 'PERMISSIVE', {
          selector: { app: 'web' },
          ports: { '8443': 'STRICT', '8080': 'STRICT' },
        }),
      ],
      [wl],
      opts,
    );
    expect(c.policiesByWorkload.get('w1')).toEqual(['ns1/converted_peer_authentication_web-pa']);
    const conv = c.authorizations.find((a) => a.name === 'converted_peer_authentication_web-pa');
    expect(conv?.rules).toEqual([
      { clauses: [{ matches: [m({ notPrincipals: [{ presence: true }], destinationPorts: [8080] })] }] },
      { clauses: [{ matches: [m({ notPrincipals: [{ presence: true }], destinationPorts: [8443] })] }] },
    ]);
  });

  it('STRICT with only STRICT ports is just STRICT (static policy, nothing converted)', () => {
    const c = compilePeerAuthentications(
      [pa('ns1', 'web-pa', 'STRICT', { selector: { app: 'web' }, ports: { '80': 'STRICT' } })],
      [wl],
      opts,
    );
    expect(c.policiesByWorkload.get('w1')).toEqual([STATIC]);
    expect(c.authorizations.map((a) => a.name)).toEqual(['istio_converted_static_strict']);
  });

  it('UNSET workload under a STRICT namespace with a PERMISSIVE port merges the namespace STRICT', () => {
    const c = compilePeerAuthentications(
      [
        pa('ns1', 'ns-pa', 'STRICT'),
        pa('ns1', 'web-pa', undefined, { selector: { app: 'web' }, ports: { '9090': 'PERMISSIVE' } }),
      ],
      [wl],
      opts,
    );
    expect(c.policiesByWorkload.get('w1')).toEqual(['ns1/converted_peer_authentication_web-pa']);
    const conv = c.authorizations.find((a) => a.name === 'converted_peer_authentication_web-pa');
    expect(conv?.rules).toEqual([
      {
        clauses: [
          { matches: [m({ notDestinationPorts: [9090] })] },
          { matches: [m({ notPrincipals: [{ presence: true }] })] },
        ],
      },
    ]);
  });

  it('UNSET workload under a PERMISSIVE mesh with a STRICT port gets a per-port group', () => {
    const c = compilePeerAuthentications(
      [
        pa('istio-system', 'mesh', 'PERMISSIVE'),
        pa('ns1', 'web-pa', undefined, { selector: { app: 'web' }, ports: { '5432': 'STRICT' } }),
      ],
      [wl],
      opts,
    );
    expect(c.policiesByWorkload.get('w1')).toEqual(['ns1/converted_peer_authentication_web-pa']);
    const conv = c.authorizations.find((a) => a.name === 'converted_peer_authentication_web-pa');
    expect(conv?.rules).toEqual([
      { clauses: [{ matches: [m({ notPrincipals: [{ presence: true }], destinationPorts: [5432] })] }] },
    ]);
  });

  it('fails closed where istiod does not: PERMISSIVE workload, STRICT port, STRICT mesh, no namespace policy', () => {
    const c = compilePeerAuthentications(
      [
        pa('istio-system', 'mesh', 'STRICT'),
        pa('ns1', 'web-pa', 'PERMISSIVE', { selector: { app: 'web' }, ports: { '5432': 'STRICT' } }),
      ],
      [wl],
      opts,
    );
    expect(c.policiesByWorkload.get('w1')).toEqual(['ns1/converted_peer_authentication_web-pa']);
    const conv = c.authorizations.find((a) => a.name === 'converted_peer_authentication_web-pa');
    expect(conv?.rules).toEqual([
      { clauses: [{ matches: [m({ notPrincipals: [{ presence: true }], destinationPorts: [5432] })] }] },
    ]);
    expect(c.warnings ?? []).toEqual([]);
  });

  it('an UNSET namespace policy under a STRICT mesh inherits STRICT: only the PERMISSIVE port takes plaintext', () => {
    const c = compilePeerAuthentications(
      [
        pa('istio-system', 'mesh', 'STRICT'),
        pa('ns1', 'ns-default', 'UNSET'),
        pa('ns1', 'web-pa', 'UNSET', { selector: { app: 'web' }, ports: { '8080': 'PERMISSIVE' } }),
      ],
      [wl],
      opts,
    );
    expect(c.policiesByWorkload.get('w1')).toEqual(['ns1/converted_peer_authentication_web-pa']);
    const conv = c.authorizations.find((a) => a.name === 'converted_peer_authentication_web-pa');
    expect(conv?.rules).toEqual([
      {
        clauses: [
          { matches: [m({ notDestinationPorts: [8080] })] },
          { matches: [m({ notPrincipals: [{ presence: true }] })] },
        ],
      },
    ]);
  });
});
