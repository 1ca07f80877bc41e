// The CA tests' expectation of a refusal: the call rejects with the client's typed CaRequestFailed
// (its gRPC code says which refusal), anything else is a failure of the test.
import { CaRequestFailed } from '../ca/client/ca-client.js';

export async function refusal(p: Promise<unknown>): Promise<CaRequestFailed> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CaRequestFailed) return err;
    throw err;
  }
  throw new Error('expected the CA to refuse');
}
