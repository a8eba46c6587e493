// A tiny moc.finalized webhook receiver for WH-HP-001 (story-01727-performance-observability.http).
//
//   HOOK_PORT=3090 HOOK_SECRET=whsec_… node __http__/hook-receiver.mjs                 # until Ctrl-C
//   HOOK_PORT=3090 HOOK_SECRET=whsec_… node __http__/hook-receiver.mjs <command> [args…]
//
// It listens on 127.0.0.1:$HOOK_PORT (default 3090). Every POST (any path; the stack is started with
// MOC_FINALIZE_WEBHOOK_URL=http://127.0.0.1:3090/hooks) is answered 204 and recorded with its path,
// headers, raw body, parsed payload and whether its Standard Webhooks signature verified:
// webhook-signature holds space-separated "v1,<base64>" entries, one of which must equal
// base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}")), key = base64-decode of
// HOOK_SECRET after "whsec_" (the stack's MOC_FINALIZE_WEBHOOK_SECRET), and webhook-timestamp must be
// within 5 minutes of now. GET /deliveries answers them all as JSON, oldest first:
//
//   [{"path": "/hooks", "receivedAt": "…", "headers": {…}, "body": "<raw>", "payload": {…} | null,
//     "verified": true | false, "verifyError": null | "why not"}]
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

const server = createServer((req, res) => {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const body = Buffer.concat(parts);
    if (req.method === 'GET' && req.url.split('?')[0] === '/deliveries') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(deliveries));
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
  log(`listening on http://127.0.0.1:${port} (GET /deliveries)${secret ? '' : ', without a secret: nothing verifies'}`);
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
    log(`stopped (${deliveries.length} deliveries)`);
    process.exit(code ?? (sig ? 1 : 0));
  });
});
