// The one entry point to @peculiar/x509 for all of Ambit. The library resolves its algorithm
// providers through tsyringe, which needs the Reflect metadata polyfill loaded first, and it
// must be told to use Node's WebCrypto. Import X.509 helpers from here, never from the package.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

export * from '@peculiar/x509';
