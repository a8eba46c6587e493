// A tiny moc.finalized webhook receiver for WH-HP-001 and OTLP trace receiver for OT-HP-001
// (story-01727-performance-observability.http).
//
//   HOOK_PORT=3090 HOOK_SECRET=whsec_… node __http__/hook-receiver.mjs                 # until Ctrl-C
//   HOOK_PORT=3090 HOOK_SECRET=whsec_… node __http__/hook-receiver.mjs <command> [args…]
//
// It listens on 127.0.0.1:$HOOK_PORT (default 3090). Every POST but to /v1/traces (any other path;
// the stack is started with MOC_FINALIZE_WEBHOOK_URL=http://127.0.0.1:3090/hooks) is answered 204
// and recorded with its path, headers, raw body, parsed payload and whether its Standard Webhooks
// signature verified:
// webhook-signature holds space-separated "v1,<base64>" entries, one of which must equal
// base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}")), key = base64-decode of
// HOOK_SECRET after "whsec_" (the stack's MOC_FINALIZE_WEBHOOK_SECRET), and webhook-timestamp must be
// within 5 minutes of now. GET /deliveries answers them all as JSON, oldest first:
//
//   [{"path": "/hooks", "receivedAt": "…", "headers": {…}, "body": "<raw>", "payload": {…} | null,
//     "verified": true | false, "verifyError": null | "why not"}]
//
// It is also an OTLP/HTTP trace receiver, JSON encoding only, for OT-HP-001: the stack started with
// OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:3090 OTEL_EXPORTER_OTLP_PROTOCOL=http/json POSTs its
// spans to /v1/traces (the exporter appends /v1/traces to the base URL), answered 200 {} and kept,
// one record per span (not deliveries). GET /spans answers them as JSON, in the order received,
// each span flattened with its resource's attributes:
//
//   [{"traceId": "<32 hex>", "spanId": "<16 hex>", "parentSpanId": "<16 hex>" | "", "name": "…",
//     "kind": 2, "startTimeUnixNano": "…", "endTimeUnixNano": "…", "status": {…},
//     "attributes": {"mocId": "…", …}, "resource": {"service.name": "moc-upload", …},
//     "scope": "<instrumentation scope>", "receivedAt": "…"}]
//
// (kind is OTLP's enum: 1 internal, 2 server, 3 client; attribute values are plain JSON values: an
// intValue a number when it fits, else its decimal string.) GET /spans?traceId=<id> and
// ?name=<span name> filter them. A protobuf export (OTEL_EXPORTER_OTLP_PROTOCOL unset or
// http/protobuf) is refused with 415, and said once on stderr.
//
// Given a command, it runs it (stdio inherited) once it listens, then stops and exits with the
// command's status: `make http` runs httpyac this way, so the receiver lives exactly as long as the
// run. It exits 2 without running the command when it cannot listen (e.g. the port is taken).
import { spawn } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

const port = Number(process.env.HOOK_PORT || 3090);
const secret = process.env.HOOK_SECRET || process.env.MOC_FINALIZE_WEBHOOK_SECRET || '';
const command = process.argv.slice(2);
const deliveries = [];
const spans = [];
let saidProtobuf = false;
const log = (msg) => process.stderr.write(`hook-receiver: ${msg}\n`);

function verify(headers, body) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigs = headers['webhook-signature'];
  if (!secret.startsWith('whsec_')) return 'the receiver has no whsec_ secret (HOOK_SECRET)';
  if (!id || !ts || !sigs) return 'webhook-id, webhook-timestamp or webhook-signature is missing';
  if (!/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return `webhook-timestamp ${ts} is not within 5 minutes`;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const want = createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest();
  const ok = sigs.split(' ').some((s) => {
    if (!s.startsWith('v1,')) return false;
    const got = Buffer.from(s.slice(3), 'base64');
    return got.length === want.length && timingSafeEqual(got, want);
  });
  return ok ? null : 'no v1 signature matches';
}

// value flattens an OTLP JSON AnyValue ({"stringValue": …}, {"intValue": "…"}, …).
function value(v) {
  if (!v || typeof v !== 'object') return null;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) {
    const n = Number(v.intValue);
    return Number.isSafeInteger(n) ? n : String(v.intValue);
  }
  if ('doubleValue' in v) return Number(v.doubleValue);
  if ('arrayValue' in v) return (v.arrayValue.values || []).map(value);
  if ('kvlistValue' in v) return attributes(v.kvlistValue.values);
  if ('bytesValue' in v) return v.bytesValue;
  return null;
}

const attributes = (kvs) => Object.fromEntries((kvs || []).map((kv) => [kv.key, value(kv.value)]));

// traces records the spans of an OTLP/HTTP JSON export (ExportTraceServiceRequest).
function traces(req, body, res) {
  if (!String(req.headers['content-type'] || '').startsWith('application/json')) {
    if (!saidProtobuf) log(`refused a ${req.headers['content-type'] || 'untyped'} export on /v1/traces: start the stack with OTEL_EXPORTER_OTLP_PROTOCOL=http/json`);
    saidProtobuf = true;
    res.writeHead(415, { 'Content-Type': 'text/plain' }).end('only OTLP/HTTP JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)\n');
    return;
  }
  let msg;
  try {
    msg = JSON.parse(body.toString('utf8'));
  } catch (err) {
    res.writeHead(400, { 'Content-Type': 'text/plain' }).end(`not JSON: ${err.message}\n`);
    return;
  }
  const receivedAt = new Date().toISOString();
  for (const rs of msg.resourceSpans || []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        spans.push({
          traceId: (s.traceId || '').toLowerCase(),
          spanId: (s.spanId || '').toLowerCase(),
          parentSpanId: (s.parentSpanId || '').toLowerCase(),
          name: s.name,
          kind: s.kind ?? 0,
          startTimeUnixNano: s.startTimeUnixNano,
          endTimeUnixNano: s.endTimeUnixNano,
          status: s.status || {},
          attributes: attributes(s.attributes),
          resource,
          scope: ss.scope?.name || '',
          receivedAt,
        });
      }
    }
  }
  res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
}

const server = createServer((req, res) => {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const body = Buffer.concat(parts);
    const url = new URL(req.url, 'http://receiver');
    if (req.method === 'GET' && url.pathname === '/deliveries') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(deliveries));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/spans') {
      const traceId = url.searchParams.get('traceId')?.toLowerCase();
      const name = url.searchParams.get('name');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(spans.filter((s) => (!traceId || s.traceId === traceId) && (!name || s.name === name))));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/v1/traces') {
      traces(req, body, res);
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(404).end();
      return;
    }
    let payload = null;
    try {
      payload = JSON.parse(body.toString('utf8'));
    } catch {}
    const verifyError = verify(req.headers, body);
    deliveries.push({
      path: req.url,
      receivedAt: new Date().toISOString(),
      headers: req.headers,
      body: body.toString('utf8'),
      payload,
      verified: verifyError === null,
      verifyError,
    });
    // Alone, it reports each delivery; around a command it stays quiet, since httpyac prints its
    // output per request, late, and the lines would land next to the wrong request.
    if (command.length === 0) {
      log(`${req.method} ${req.url} ${payload?.event} mocId=${payload?.mocId} ${verifyError ? `NOT verified: ${verifyError}` : 'signature verified'}`);
    }
    res.writeHead(204).end();
  });
});

server.on('error', (err) => {
  log(`cannot listen on 127.0.0.1:${port}: ${err.message} (HOOK_PORT=… for another port)`);
  process.exit(2);
});
server.listen(port, '127.0.0.1', () => {
  log(`listening on http://127.0.0.1:${port} (GET /deliveries; OTLP/HTTP JSON on /v1/traces, GET /spans)${secret ? '' : ', without a secret: nothing verifies'}`);
  if (command.length === 0) {
    for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
    return;
  }
  const child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('error', (err) => {
    log(`cannot run ${command[0]}: ${err.message}`);
    process.exit(127);
  });
  child.on('exit', (code, sig) => {
    server.closeAllConnections();
    server.close();
    log(`stopped (${deliveries.length} deliveries, ${spans.length} spans)`);
    process.exit(code ?? (sig ? 1 : 0));
  });
});
