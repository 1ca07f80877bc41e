// A live stream of connection events (open/close with verdicts) for the demo's web view and for
// `curl 127.0.0.1:15000/flows`. Istio has no equivalent endpoint; users ask for "what is ztunnel doing
// right now" without scraping logs, so we expose the same facts the access log carries as JSON lines.
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface FlowEndpoint {
  addr: string;
  workload?: string;
  namespace?: string;
  identity?: string;
  service?: string;
}

export interface FlowEvent {
  /** Per-process connection id (also in the access log as `conn_id`). */
  id: number;
  phase: 'open' | 'close';
  /** RFC 3339 time of the event. */
  time: string;
  direction: 'outbound' | 'inbound';
  /** Which listener path: outbound (15001), inbound HBONE (15008), inbound plaintext (15006). */
  path: 'outbound' | 'inbound' | 'inbound-passthrough';
  src: FlowEndpoint;
  dst: FlowEndpoint;
  /** The CONNECT authority when the connection is tunneled. */
  hboneAddr?: string;
  securityPolicy: 'mutual_tls' | 'unknown';
  /** On close. */
  bytesSent?: number;
  bytesRecv?: number;
  durationMs?: number;
  responseFlags?: string;
  error?: string;
  /** The policy that decided, `ns/name`, when one did. */
  policy?: string;
}

export class FlowEvents extends EventEmitter<{ flow: [FlowEvent] }> {
  /** A small ring of recent events so a client that connects late still sees some history. */
  private readonly recent: FlowEvent[] = [];

  constructor(private readonly keep = 200) {
    super();
    // Every admin stream client is a listener; do not warn at 10.
    this.setMaxListeners(0);
  }

  publish(event: FlowEvent): void {
    this.recent.push(event);
    if (this.recent.length > this.keep) this.recent.shift();
    this.emit('flow', event);
  }

  history(): readonly FlowEvent[] {
    return this.recent;
  }

  /**
   * Serves the stream as newline-delimited JSON: history first (unless `?history=0`), then live
   * events until the client goes away. The listener is removed when the response closes.
   */
  serve(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
    // Send the headers now: a client waits for them before reading, and no event may come for a while.
    res.flushHeaders();
    if (url.searchParams.get('history') !== '0') {
      for (const e of this.recent) res.write(`${JSON.stringify(e)}\n`);
    }
    const onFlow = (e: FlowEvent): void => {
      res.write(`${JSON.stringify(e)}\n`);
    };
    this.on('flow', onFlow);
    res.on('close', () => this.off('flow', onFlow));
  }
}
