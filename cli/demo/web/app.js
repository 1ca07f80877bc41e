// The flow view (plain JS, no build step, no CDN). Data: /api/topology (the mesh state the demo's
// manifests produce) and /api/flows (Server-Sent Events of the ztunnels' and waypoint's admin flow
// streams). The "what if" box posts to /api/explain (core/policy/explain, the data path's own engine).

const MAX_ROWS = 400;
const EDGE_WINDOW_MS = 30_000;
const state = { topo: null, rows: [], byIp: new Map(), byName: new Map(), paused: false, total: 0 };

const $ = (id) => document.getElementById(id);
const esc = (s) =>
  String(s ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );
/** Istio's principal form (`cluster.local/ns/shop/sa/frontend`): what AuthorizationPolicy principals match. */
const principal = (id) => (id ? String(id).replace(/^spiffe:\/\//, '') : '');

async function loadTopology() {
  const r = await fetch('/api/topology');
  const t = await r.json();
  state.topo = t;
  state.byIp = new Map();
  state.byName = new Map();
  // A service VIP stands for its (first) endpoint: the waypoint reports denied requests by VIP.
  for (const sv of t.services) {
    const w = t.workloads.find((x) => `${x.namespace}/${x.name}` === sv.endpoints?.[0]);
    if (w) for (const vip of sv.vips) state.byIp.set(vip, w);
  }
  for (const w of t.workloads) {
    if (w.ip) state.byIp.set(w.ip, w);
    state.byName.set(`${w.namespace}/${w.name}`, w);
  }
  const mode =
    t.captureMode === 'ebpf'
      ? 'eBPF'
      : t.captureMode === 'nftables'
        ? 'nftables TPROXY (eBPF could not load)'
        : 'unknown';
  $('summary').textContent =
    `${t.nodes.length} nodes · ${t.workloads.length} workloads (${t.workloads.filter((w) => w.enrolled).length} in the mesh) · capture: ${mode} · waypoint: ${t.waypoint ?? 'none'} · ${t.policies.length} policies · manifests: ${t.manifestsDir}`;
  showProblems(t);
  fillWhatIf(t);
  const ns = $('f-ns');
  const have = new Set([...ns.options].map((o) => o.value));
  for (const n of [...new Set(t.workloads.map((w) => w.namespace))].sort()) {
    if (!have.has(n)) ns.add(new Option(n, n));
  }
  drawGraph();
}

/** Rejected manifests (file, object, field) and status findings: what would otherwise be only in logs. */
function showProblems(t) {
  const errs = t.errors ?? [];
  const findings = t.findings ?? [];
  const b = $('banner');
  if (errs.length === 0 && findings.length === 0) {
    b.hidden = true;
    b.innerHTML = '';
    return;
  }
  b.hidden = false;
  b.innerHTML = [
    ...errs.map((e) => `<li class="err"><b>rejected manifest:</b> ${esc(e)}</li>`),
    ...findings.map((f) => `<li class="finding"><b>${esc(f.object)}:</b> ${esc(f.message)}</li>`),
  ].join('');
}

function fillWhatIf(t) {
  const sel = $('wi-source');
  if (sel.options.length === 0) {
    for (const w of t.workloads)
      sel.add(
        new Option(
          `${w.namespace}/${w.name}${w.isWaypoint ? ' (waypoint)' : w.enrolled ? '' : ' (plaintext)'}`,
          w.uid,
        ),
      );
  }
  const dl = $('wi-dests');
  dl.innerHTML = '';
  for (const s of t.services)
    for (const p of s.ports) dl.append(new Option(`${s.name}.${s.namespace}:${p.servicePort ?? p.port}`));
  // Pod addresses with the target ports their services send to (8080 when no service selects the pod).
  const podPorts = new Map();
  for (const s of t.services)
    for (const e of s.endpoints ?? [])
      for (const p of s.ports)
        if (p.targetPort > 0) podPorts.set(e, [...(podPorts.get(e) ?? []), p.targetPort]);
  for (const w of t.workloads) {
    if (!w.ip || w.isWaypoint) continue;
    // A datalist option's VALUE is what the input receives: the address; the label names the pod.
    for (const port of new Set(podPorts.get(`${w.namespace}/${w.name}`) ?? [8080]))
      dl.append(new Option(`${w.namespace}/${w.name}`, `${w.ip}:${port}`));
  }
}

/** The workload a flow endpoint is: by name when the reporter knew it, else by address. */
function endpointKey(ep) {
  if (ep.workload && ep.namespace) return `${ep.namespace}/${ep.workload}`;
  const ip = String(ep.addr ?? '').replace(/:\d+$/, '');
  const w = state.byIp.get(ip);
  return w ? `${w.namespace}/${w.name}` : ip || '?';
}

function edgeClass(r) {
  if (r.verdict === 'DENIED') return 'denied';
  if (r.verdict === 'ERROR') return 'error';
  return r.mtls ? 'mtls' : 'plain';
}

function layout() {
  const t = state.topo;
  const svg = $('graph');
  const W = svg.clientWidth || 800;
  const H = svg.clientHeight || 380;
  const nodes = t.nodes.map((n) => n.name);
  const cols = Math.max(nodes.length, 1);
  const colW = W / cols;
  const pos = new Map();
  const boxes = [];
  nodes.forEach((n, i) => {
    const wls = t.workloads
      .filter((w) => w.node === n)
      .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
    const x0 = i * colW + 14;
    boxes.push({ name: n, x: x0, y: 22, w: colW - 28, h: H - 34 });
    const step = (H - 70) / Math.max(wls.length, 1);
    wls.forEach((w, k) => {
      const x = x0 + (k % 2 === 0 ? colW * 0.3 : colW * 0.62);
      pos.set(`${w.namespace}/${w.name}`, { x, y: 60 + k * step + step / 2 - 10, w });
    });
  });
  return { pos, boxes, W, H };
}

function drawGraph() {
  if (!state.topo) return;
  const svg = $('graph');
  const { pos, boxes } = layout();
  const now = Date.now();
  const edges = new Map();
  for (const r of state.rows) {
    if (now - Date.parse(r.time) > EDGE_WINDOW_MS) continue;
    const a = endpointKey(r.src);
    const b = endpointKey(r.dst);
    if (a === b) continue;
    const key = `${a}→${b}`;
    // Rows are one per connection (mergeReport); a waypoint row is one request.
    const e = edges.get(key) ?? { a, b, conns: 0, reqs: 0, classes: new Set() };
    if (r.l7) e.reqs++;
    else e.conns++;
    e.classes.add(edgeClass(r));
    edges.set(key, e);
  }
  const parts = [];
  for (const b of boxes) {
    parts.push(
      `<rect class="node-box" x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="8"/><text class="node-label" x="${b.x + 8}" y="${b.y + 16}">node ${esc(b.name)}</text>`,
    );
  }
  parts.push('<defs>');
  for (const c of ['mtls', 'plain', 'denied', 'error']) {
    parts.push(
      `<marker id="arrow-${c}" viewBox="0 0 10 10" refX="20" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="edge ${c}" style="fill:currentColor"/></marker>`,
    );
  }
  parts.push('</defs>');
  for (const e of edges.values()) {
    const p = pos.get(e.a);
    const q = pos.get(e.b);
    if (!p || !q) continue;
    // One path per verdict class, so a pair with allowed AND denied calls shows both colours.
    let off = 0;
    for (const c of ['mtls', 'plain', 'denied', 'error']) {
      if (!e.classes.has(c)) continue;
      const mx = (p.x + q.x) / 2 + (q.y - p.y) * 0.15 + off;
      const my = (p.y + q.y) / 2 - (q.x - p.x) * 0.15 + off;
      parts.push(
        `<path class="edge ${c}" data-edge="${esc(e.a)}→${esc(e.b)}" data-class="${c}" d="M${p.x},${p.y} Q${mx},${my} ${q.x},${q.y}" marker-end="url(#arrow-${c})"><title>${esc(e.a)} → ${esc(e.b)}: ${c}</title></path>`,
      );
      off += 10;
    }
    const lx = (p.x + q.x) / 2 + (q.y - p.y) * 0.08;
    const ly = (p.y + q.y) / 2 - (q.x - p.x) * 0.08;
    // Rates over the edge window, with their unit: requests (waypoint) or connections (ztunnel).
    const rate = (n) => (n / (EDGE_WINDOW_MS / 1000)).toFixed(n * 1000 >= EDGE_WINDOW_MS * 10 ? 0 : 1);
    const label = [e.reqs ? `${rate(e.reqs)} req/s` : '', e.conns ? `${rate(e.conns)} conn/s` : '']
      .filter(Boolean)
      .join(' · ');
    parts.push(`<text class="edge-label" x="${lx}" y="${ly}">${label}</text>`);
  }
  for (const [key, { x, y, w }] of pos) {
    const cls = [
      'wl',
      w.enrolled ? 'enrolled' : '',
      w.isWaypoint ? 'waypoint' : '',
      state.selected === key ? 'selected' : '',
    ].join(' ');
    parts.push(
      `<g class="${cls}" data-workload="${esc(key)}"><circle cx="${x}" cy="${y}" r="13"/><text x="${x + 17}" y="${y - 1}">${esc(w.name)}</text><text class="sub" x="${x + 17}" y="${y + 11}">${esc(w.namespace)} · ${esc(w.ip)}</text></g>`,
    );
  }
  svg.innerHTML = parts.join('');
}

function matches(r) {
  const text = $('f-text').value.trim().toLowerCase();
  const v = $('f-verdict').value;
  const sec = $('f-security').value;
  const ns = $('f-ns').value;
  const rep = $('f-reporter').value;
  if (v && r.verdict !== v) return false;
  if (sec === 'mtls' && !r.mtls) return false;
  if (sec === 'plain' && r.mtls) return false;
  if (ns && r.src.namespace !== ns && r.dst.namespace !== ns) return false;
  if (rep && !r.reporter.split(' → ').includes(rep)) return false;
  if (text) {
    // Match what the row shows (ns/name, service, method/path) as well as every raw field.
    const l7 = r.l7 ? `${r.l7.method ?? ''} ${r.l7.path ?? ''} ${r.l7.status ?? ''}` : '';
    const hay = `${endpointKey(r.src)} ${endpointKey(r.dst)} ${l7} ${JSON.stringify(r)}`.toLowerCase();
    if (!hay.includes(text)) return false;
  }
  return true;
}

/** The deciding policy, or why no single policy decided (ztunnel's reason, e.g. no ALLOW matched). */
function policyCell(r) {
  if (r.policy) return `<span class="policy">${esc(r.policy)}</span>`;
  const m = /policy (?:rejection|change): (.*)$/.exec(r.error ?? '');
  return m ? `<span class="mute" title="${esc(m[1])}">${esc(m[1])}</span>` : '';
}

function rowHtml(r) {
  const t = new Date(r.time);
  const time = `${t.toLocaleTimeString([], { hour12: false })}.${String(t.getMilliseconds()).padStart(3, '0')}`;
  const src = `${esc(endpointKey(r.src))}<small>${esc(r.src.addr)}</small>`;
  const svc = r.dst.service ? `${esc(r.dst.service.replace(/\.svc\.cluster\.local$/, ''))} → ` : '';
  const dst = `${svc}${esc(endpointKey(r.dst))}<small>${esc(r.dst.addr)}</small>`;
  const ident = `<span title="${esc(r.src.identity)}">${esc(principal(r.src.identity) || '— (no identity)')}</span><small title="${esc(r.dst.identity)}">→ ${esc(principal(r.dst.identity) || '—')}</small>`;
  const l7 = r.l7
    ? esc(
        `${r.l7.method ?? ''} ${r.l7.path ?? ''} ${r.l7.status ?? ''}${r.l7.grpcStatus !== undefined ? ` grpc-status=${r.l7.grpcStatus}` : ''}`.trim(),
      )
    : '';
  const bytes = r.bytesSent !== undefined ? `${r.bytesSent} / ${r.bytesRecv ?? 0}` : '';
  const why = r.error ? ` title="${esc(r.error)}"` : '';
  return `<tr data-verdict="${r.verdict}"><td>${time}</td><td>${esc(r.reporter)}<small>${esc(r.direction)}</small></td><td>${src}</td><td>${dst}</td><td class="identity">${ident}</td><td class="sec-${r.mtls ? 'mtls' : 'plain'}">${r.mtls ? 'mTLS' : 'plaintext'}</td><td class="verdict v-${r.verdict}"${why}>${r.verdict}</td><td class="policy-cell">${policyCell(r)}</td><td class="l7">${l7}</td><td>${bytes}</td></tr>`;
}

function renderTable() {
  const rows = state.rows.filter(matches).slice(-MAX_ROWS).reverse();
  $('flows').tBodies[0].innerHTML = rows.map(rowHtml).join('');
  $('flow-count').textContent = `(${state.total} seen, ${rows.length} shown)`;
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    if (!state.paused) renderTable();
    drawGraph();
  }, 250);
}

function addReporter(rep) {
  const sel = $('f-reporter');
  if ([...sel.options].some((o) => o.value === rep)) return;
  sel.add(new Option(rep, rep));
}

const VERDICT_RANK = { FORWARDED: 0, ERROR: 1, DENIED: 2 };
const ipOf = (addr) => String(addr ?? '').replace(/:\d+$/, '');

/**
 * Both ends' ztunnels report one HBONE connection (outbound on the client's node, inbound on the
 * server's). The second report is merged into the first: one row per connection, both reporters named,
 * the deciding policy and the worse verdict kept (the server side decides L4 policy).
 */
function mergeReport(r) {
  if (!r.reporter.startsWith('ztunnel/')) return false;
  const t = Date.parse(r.time);
  for (let i = state.rows.length - 1, k = 0; i >= 0 && k < 60; i--, k++) {
    const o = state.rows[i];
    if (Math.abs(Date.parse(o.time) - t) > 2000) break;
    if (o.merged || !o.reporter.startsWith('ztunnel/') || o.reporter === r.reporter) continue;
    if (o.direction === r.direction) continue;
    if (ipOf(o.src.addr) !== ipOf(r.src.addr) || o.dst.addr !== r.dst.addr) continue;
    const inbound = r.direction === 'inbound' ? r : o;
    const outbound = r.direction === 'inbound' ? o : r;
    o.merged = true;
    o.reporter = `${outbound.reporter} → ${inbound.reporter}`;
    o.direction = 'outbound → inbound';
    o.policy = inbound.policy ?? outbound.policy;
    if (VERDICT_RANK[r.verdict] > VERDICT_RANK[o.verdict]) o.verdict = r.verdict;
    if (inbound.error || outbound.error) o.error = inbound.error ?? outbound.error;
    return true;
  }
  return false;
}

function connectFlows() {
  const es = new EventSource('/api/flows');
  es.onmessage = (m) => {
    const r = JSON.parse(m.data);
    addReporter(r.reporter);
    if (mergeReport(r)) {
      schedule();
      return;
    }
    state.rows.push(r);
    state.total++;
    if (state.rows.length > 3000) state.rows.splice(0, state.rows.length - 3000);
    schedule();
  };
}

$('whatif').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = { source: $('wi-source').value, destination: $('wi-dest').value };
  if ($('wi-method').value.trim()) body.method = $('wi-method').value.trim().toUpperCase();
  if ($('wi-path').value.trim()) body.path = $('wi-path').value.trim();
  const out = $('wi-result');
  out.textContent = 'asking…';
  const r = await fetch('/api/explain', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const x = await r.json();
  if (!r.ok) {
    out.innerHTML = `<div class="verdict deny">${esc(x.error)}</div>`;
    return;
  }
  const d = x.decision;
  const items = [];
  items.push(`decided at: <b>${esc(x.enforcedAt)}</b> (${esc(x.decidingEndpoint)})`);
  items.push(`reason: ${esc(d.reason)}`);
  if (d.policy)
    items.push(
      `deciding policy: <b class="policy">${esc(d.policy)}</b>${d.rule !== undefined ? ` rule ${d.rule}` : ''}`,
    );
  if (x.waypoint)
    items.push(
      `via waypoint ${esc(x.waypoint.name)}: ${x.waypoint.decision.allow ? 'allow' : 'deny'} — ${esc(x.waypoint.decision.reason)}`,
    );
  for (const e of x.endpoints ?? [])
    items.push(
      `endpoint ${esc(e.workload.namespace)}/${esc(e.workload.name)}:${e.targetPort} — ${e.decision.allow ? 'allow' : 'deny'}${e.decision.policy ? ` (${esc(e.decision.policy)})` : ''}`,
    );
  for (const w of x.dropped ?? [])
    items.push(
      `<span class="mute">L7 rule not enforceable at ztunnel: ${esc(w.policy)} rule ${w.rule} — ${esc(w.message)}</span>`,
    );
  for (const w of x.warnings ?? []) items.push(`<span class="mute">${esc(w)}</span>`);
  out.innerHTML = `<div class="verdict ${d.allow ? 'allow' : 'deny'}">${d.allow ? 'ALLOW' : 'DENY'}</div><div class="mute">${esc(x.source.identity ?? 'plaintext (no identity)')} → ${esc(body.destination)}</div><ul>${items.map((i) => `<li>${i}</li>`).join('')}</ul>`;
});

for (const id of ['f-text', 'f-verdict', 'f-security', 'f-ns', 'f-reporter'])
  $(id).addEventListener('input', renderTable);
$('f-pause').addEventListener('change', (e) => {
  state.paused = e.target.checked;
  renderTable();
});
window.addEventListener('resize', drawGraph);
// Clicking a workload filters the table to its flows; clicking it again (or elsewhere) clears it.
$('graph').addEventListener('click', (ev) => {
  const g = ev.target.closest('[data-workload]');
  const key = g ? g.dataset.workload : null;
  state.selected = key && state.selected !== key ? key : null;
  $('f-text').value = state.selected ?? '';
  renderTable();
  drawGraph();
});

loadTopology().then(connectFlows);
// Manifest edits change the mesh: refresh the workloads/policies every few seconds.
// Once a second, so a rejected manifest shows in the banner within two seconds of being saved.
setInterval(() => loadTopology().catch(() => undefined), 1000);
setInterval(drawGraph, 2000);
