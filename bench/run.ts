// `npm run bench [-- name...]`: runs every compiled `dist/bench/*.bench.js` (or the named ones) in turn.
// Each scenario's default export prints its own table; targets are checked and reported, never asserted in tests.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface BenchScenario {
  name: string;
  run(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();

let failed = 0;
for (const file of files) {
  const mod = (await import(pathToFileURL(join(here, file)).href)) as { default: BenchScenario };
  console.log(`\n=== ${mod.default.name} (${file}) ===`);
  try {
    await mod.default.run();
  } catch (err) {
    failed++;
    console.error(`bench ${file} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}
if (files.length === 0) console.log('no benchmark scenarios matched');
process.exit(failed ? 1 : 0);
