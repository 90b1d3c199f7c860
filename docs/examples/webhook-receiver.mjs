// A Verdict webhook receiver in plain Node.js (no packages): it verifies the
// Standard Webhooks signature, refuses stale or replayed requests, and handles
// each webhook-id once. Run:
//   WEBHOOK_SECRET=whsec_... PORT=9000 node docs/examples/webhook-receiver.mjs
// then: verdict demo --webhook http://127.0.0.1:9000/verdict --webhook-secret "$WEBHOOK_SECRET"
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

const secrets = (process.env.WEBHOOK_SECRET ?? '').split(',').filter(Boolean); // old,new while rotating
const TOLERANCE_S = 5 * 60;
const seen = new Map(); // webhook-id -> time; use your database in production

function verified(headers, body) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigs = (headers['webhook-signature'] ?? '').split(' ');
  if (!id || !ts || Math.abs(Date.now() / 1000 - Number(ts)) > TOLERANCE_S) return false;
  return secrets.some((secret) => {
    const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
    const expected = Buffer.from(createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64'));
    return sigs.some((s) => {
      const [version, sig = ''] = s.split(',');
      const got = Buffer.from(sig);
      return version === 'v1' && got.length === expected.length && timingSafeEqual(got, expected);
    });
  });
}

createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    // Verify the raw body as received: re-serialised JSON would not match.
    if (!verified(req.headers, body)) return res.writeHead(401).end('bad signature\n');
    const id = req.headers['webhook-id'];
    if (!seen.has(id)) {
      seen.set(id, Date.now());
      const event = JSON.parse(body);
      for (const a of event.data.alerts) console.log(`${event.type} ${id} [${a.severity}] ${a.title}`);
    }
    // 2xx quickly; do slow work after answering. 410 would disable this endpoint.
    res.writeHead(204).end();
  });
}).listen(Number(process.env.PORT ?? 9000), '127.0.0.1', function () {
  console.log(`listening on http://127.0.0.1:${this.address().port}/`);
});
