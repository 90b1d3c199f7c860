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
// read, so it stops there, quietly, with the status set so far (0 if none),
// instead of crashing on an unhandled 'error' event with a stack trace.
for (const out of [process.stdout, process.stderr]) {
  out.on('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
}
const { main } = await import(cli);
process.exitCode = await main(process.argv.slice(2));
