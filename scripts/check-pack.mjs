// `npm pack` / `npm publish` (prepack): refuse to pack a tree that is not built, naming what is missing.
// The package ships what `ambit` loads at run time, prebuilt by `npm run build` on linux-x64: the
// compiled CLI, the eBPF objects (CO-RE, loaded by the node agent) and the two N-API addons (node_api.h
// only, NAPI_VERSION 8, so one build serves every Node release of the engines range).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNTIME_FILES = [
  ['dist/cli/ambit.js', 'npm run build (tsc)'],
  ['proto/ca.proto', 'a checkout of the repository'],
  ['bpf-redirect/build/steer_tc.bpf.o', 'npm run build:bpf'],
  ['bpf-redirect/build/sock_connect.bpf.o', 'npm run build:bpf'],
  ['bpf-redirect/build/ambit_bpfmap.node', 'npm run build:bpf'],
  ['ztunnel/native/build/ambit_native.node', 'npm run build:native'],
];
const missing = RUNTIME_FILES.filter(([file]) => !existsSync(join(root, file)));
if (missing.length > 0) {
  for (const [file, how] of missing) console.error(`ambit pack: missing ${file} (built by \`${how}\`)`);
  console.error('ambit pack: run `npm run build` first; the package ships these prebuilt');
  process.exit(1);
}
