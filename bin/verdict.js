#!/usr/bin/env node
// Entry point for `npx verdict`. The TypeScript sources are compiled to dist/ by
// `npm run build`, which `npm ci` runs through the prepare script.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write('verdict: dist/cli.js is missing; run `npm run build` (npm ci does it for you)\n');
  process.exit(1);
}
// A reader that goes away early (`verdict config check . | head -1`) makes the
// next write fail with EPIPE. Nothing the command prints after that can be
// read, so it stops there, quietly (no stack trace from an unhandled 'error'
// event). A status already set is kept. Otherwise the command was cut off
// before it knew its answer (`gitops diff | head -1` before the dry runs), and
// exiting 0 would say "done, nothing to report": it dies of SIGPIPE instead,
// as kubectl and other Go or C programs do (status 141 under a shell, which
// pipefail reports). Node ignores SIGPIPE; adding and removing a listener
// gives it back its default action. The exit after the kill covers a signal
// delivered to another thread after kill() returns: the same 141 to a shell.
function dieOfSigpipe() {
  const noop = () => {};
  process.on('SIGPIPE', noop);
  process.off('SIGPIPE', noop);
  process.kill(process.pid, 'SIGPIPE');
  process.exit(128 + 13);
}
for (const out of [process.stdout, process.stderr]) {
  out.on('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    if (process.exitCode !== undefined) process.exit(process.exitCode);
    dieOfSigpipe();
  });
}
const { main } = await import(cli);
process.exitCode = await main(process.argv.slice(2));
