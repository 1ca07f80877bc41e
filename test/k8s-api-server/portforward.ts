// TEST DOUBLE part: `pods/<name>/portforward` over WebSocket, as the apiserver proxies it to the kubelet
// (subprotocol v4.channel.k8s.io, kubelet pkg/kubelet/cri/streaming/portforward/websocket.go): for the
// one `?ports=` port, channel 0 carries data and channel 1 errors, each channel's first frame starting
// with the port as 2 bytes little-endian; every later frame is the channel byte then the bytes. The
// server side dials the pod (its status.podIP, or what the test's resolver says, since pod IPs are not
// routable here) and relays until either side closes.
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { findResource } from './resources.js';
import type { Obj, ObjectStore } from './store.js';

export type PortForwardResolver = (pod: Obj, port: number) => { host: string; port: number } | undefined;

const PATH = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/;

export function handlePortForwardUpgrades(
  server: { on(event: 'upgrade', l: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): unknown },
  store: ObjectStore,
  resolve: () => PortForwardResolver | undefined,
): void {
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => (protocols.has('v4.channel.k8s.io') ? 'v4.channel.k8s.io' : false),
  });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = PATH.exec(url.pathname);
    const port = Number(url.searchParams.get('ports'));
    const refuse = (code: number, text: string) => {
      socket.end(`HTTP/1.1 ${code} ${text}\r\ncontent-length: 0\r\n\r\n`);
    };
    if (!m || !Number.isInteger(port) || port <= 0 || port > 65535) return refuse(400, 'Bad Request');
    const pods = findResource('', 'v1', 'pods')!;
    const pod = store.tryGet(pods, decodeURIComponent(m[1]!), decodeURIComponent(m[2]!));
    if (!pod) return refuse(404, 'Not Found');
    const podIp = (pod.status as { podIP?: string } | undefined)?.podIP;
    const target = resolve()?.(pod, port) ?? (podIp ? { host: podIp, port } : undefined);
    if (!target) return refuse(500, 'Internal Server Error');
    wss.handleUpgrade(req, socket, head, (ws) => {
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16LE(port, 0);
      ws.send(Buffer.concat([Buffer.from([0]), prefix]));
      ws.send(Buffer.concat([Buffer.from([1]), prefix]));
      const tcp: Socket = connect(target.port, target.host);
      tcp.on('data', (d: Buffer) => ws.send(Buffer.concat([Buffer.from([0]), d])));
      tcp.on('error', (err) => {
        if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(err.message)]));
        ws.close();
      });
      tcp.on('close', () => ws.close());
      ws.on('message', (d: Buffer) => {
        if (d.length > 1 && d[0] === 0) tcp.write(d.subarray(1));
      });
      ws.on('close', () => tcp.destroy());
    });
  });
}
