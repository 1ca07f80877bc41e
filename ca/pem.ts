// PEM handling shared by the CA server and client: splitting bundles and converting to DER.

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** Splits a PEM text into its blocks (each with a trailing newline), optionally only of one label. */
export function splitPem(text: string, label?: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (label === undefined || m[1] === label) out.push(`${m[0]}\n`);
  }
  return out;
}

/** All CERTIFICATE blocks of several PEM texts, in order. */
export function certificatesOf(texts: string | string[]): string[] {
  return (Array.isArray(texts) ? texts : [texts]).flatMap((t) => splitPem(t, 'CERTIFICATE'));
}

export function pemToDer(pem: string): Buffer {
  const body = pem.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

export function derToPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
