// core/ is shared by every component, so it may import only core/, node: built-ins and packages; a
// component importing back into core would make the dependency graph a cycle (docs/architecture.md).
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CORE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(CORE, '..');
const COMPONENTS = ['ztunnel', 'waypoint', 'ca', 'controllers', 'discovery', 'bpf-redirect', 'cli', 'bench'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

// Static `from '…'`, side-effect `import '…'` and dynamic `import('…')` specifiers.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g;

/** Every relative import of a file under core/ that leaves core/, as `file → target`. */
function importsLeavingCore(): string[] {
  const out: string[] = [];
  for (const file of sources(CORE)) {
    for (const m of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
      const spec = m[1]!;
      if (!spec.startsWith('.')) continue;
      const target = relative(ROOT, resolve(dirname(file), spec));
      if (!target.startsWith('core/')) out.push(`${relative(ROOT, file)} → ${target}`);
    }
  }
  return out;
}

/** Every relative import of `netns/` from a file that is not a test, under a runtime component folder. */
function runtimeImportsOfNetns(): string[] {
  const out: string[] = [];
  for (const top of ['core', 'ca', 'discovery', 'controllers', 'ztunnel', 'waypoint', 'bpf-redirect']) {
    for (const file of sources(join(ROOT, top))) {
      if (file.endsWith('.test.ts') || file.includes('/node_modules/')) continue;
      for (const m of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
        const spec = m[1]!;
        if (spec.startsWith('.') && relative(ROOT, resolve(dirname(file), spec)).startsWith('netns/'))
          out.push(`${relative(ROOT, file)} → ${spec}`);
      }
    }
  }
  return out;
}

describe('netns/ layering', () => {
  it('the network-namespace harness is used by the demo (cli/), tests and benchmarks, never by a component', () => {
    expect(runtimeImportsOfNetns()).toEqual([]);
  });
});

describe('core/ layering', () => {
  it('imports no component (ztunnel, waypoint, ca, controllers, discovery, bpf-redirect, cli, bench)', () => {
    const leaving = importsLeavingCore();
    const intoComponents = leaving.filter((l) =>
      COMPONENTS.some((c) => l.split(' → ')[1]!.startsWith(`${c}/`)),
    );
    expect(intoComponents).toEqual([]);
    // Runtime code imports nothing else outside core/ either; a unit test may use the test/ harness.
    expect(leaving.filter((l) => !/\.test\.ts → test\//.test(l))).toEqual([]);
  });
});
