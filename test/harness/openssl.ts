// A self-signed ECDSA P-256 certificate made by openssl (the C tools' own view of a certificate, for
// tests and for the stunnel reference pair in bench/ztunnel).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SelfSigned {
  keyFile: string;
  certFile: string;
  key: string;
  cert: string;
}

/** `dir/<name>-key.pem` and `dir/<name>-cert.pem`, valid for `days`; `extra` adds openssl req arguments. */
export function selfSignedP256(
  dir: string,
  name: string,
  o: { cn: string; days?: number; extra?: string[] },
): SelfSigned {
  const keyFile = join(dir, `${name}-key.pem`);
  const certFile = join(dir, `${name}-cert.pem`);
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256'],
      ...['-days', String(o.days ?? 2), '-subj', `/CN=${o.cn}`, ...(o.extra ?? [])],
      ...['-keyout', keyFile, '-out', certFile],
    ],
    { stdio: 'ignore' },
  );
  return { keyFile, certFile, key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
}
