// What every state source offers its owner: the manifest directory (manifests.ts) today, Kubernetes
// informers next. A source validates raw objects (schema.ts), hands them to the one Translator
// (translate.ts), and the MeshState it fills is the snapshot + change events the components consume.
import type { MeshState } from '../state/state.js';
import type { InvalidObjectError } from './schema.js';

export interface StateSource {
  /** The state this source keeps current: `snapshot()` and `onChange()` live there. */
  readonly state: MeshState;
  /** Loads everything once, then follows changes until stop(). Rejects only when the source itself is unusable. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Objects rejected, each a one-line error naming file/object and field. Their last good version keeps serving. */
  errors(): InvalidObjectError[];
  /** Accepted, but worth saying (values that can never match, L7 rules narrowed at L4, waypoint problems). */
  warnings(): string[];
}
