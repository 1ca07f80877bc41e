// Child process for the Kubernetes integration test: asks the CA for a certificate, the way a node's
// ztunnel does (bearer token from a file, ImpersonatedIdentity), from inside a node netns, and prints
// the outcome as one JSON line: {"ok":true,"san":...} or {"ok":false,"code":<grpc status>,"message":...}.
//   node k8s-csr-probe.js CA_HOST:PORT ROOT_FILE TOKEN_FILE SPIFFE_ID
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CaClient, CaRequestFailed } from '../ca/client/ca-client.js';
import { createKeyAndCsr } from '../ca/client/csr.js';
import { parseSpiffeId } from '../core/identity/spiffe.js';

const [address, rootFile, tokenFile, identity] = process.argv.slice(2);
if (!address || !rootFile || !tokenFile || !identity) {
  console.error('usage: k8s-csr-probe CA_HOST:PORT ROOT_FILE TOKEN_FILE SPIFFE_ID');
  process.exit(2);
}
const client = new CaClient({
  address,
  rootsPem: () => readFile(rootFile, 'utf8'),
  token: async () => (await readFile(tokenFile, 'utf8')).trim(),
});
try {
  const { csrPem } = await createKeyAndCsr(parseSpiffeId(identity));
  const chain = await client.createCertificate(csrPem, 3600, identity);
  console.log(JSON.stringify({ ok: true, san: new X509Certificate(chain[0]!).subjectAltName }));
} catch (err) {
  const code = err instanceof CaRequestFailed ? err.grpcCode : -1;
  console.log(JSON.stringify({ ok: false, code, message: (err as Error).message }));
} finally {
  client.close();
}
