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
const { main } = await import(cli);
process.exitCode = await main(process.argv.slice(2));
