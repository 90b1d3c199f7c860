import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Benchmarks live beside the code they measure as `*.bench.ts`; each exports a
// default async function that prints its own numbers, including a baseline
// measured in the same run. `npm run bench -- match` runs those whose path
// contains "match".

const root = fileURLToPath(new URL('..', import.meta.url));

function findBenches(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findBenches(p, out);
    else if (name.endsWith('.bench.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const benches = findBenches(root)
  .sort()
  // Matched against the path below src/, so a checkout whose own path holds the filter word does not select every benchmark.
  .filter((p) => filters.length === 0 || filters.some((f) => p.slice(root.length).includes(f)));
if (benches.length === 0) {
  console.error(`no benchmark matches ${filters.join(', ') || '(any)'}`);
  process.exit(1);
}
for (const file of benches) {
  console.log(`\n## ${file.slice(root.length)}`);
  const mod = (await import(pathToFileURL(file).href)) as { default: () => Promise<void> };
  await mod.default();
}
