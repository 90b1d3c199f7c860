import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir, verdictRun } from '../../test/helpers/processes.js';

// The commands on the server's database read data_dir from --config: a file that cannot be read, or whose data_dir
// is unusable, is a wrong flag like any other: one plain line on stderr and exit 2, not a JSON log line and exit 1.

describe('--config of the commands on the server database', () => {
  const dir = tempDir('verdict-cli-config-');
  const missing = join(dir, 'missing.yaml');
  const misspelt = join(dir, 'misspelt.yaml');
  writeFileSync(misspelt, 'data_dri: /srv/verdict\n');
  const commands = [
    ['agents', 'list'],
    ['agents', 'register', 'edge', '--config-project', dir],
    ['tokens', 'list'],
    ['ci-tokens', 'list'],
  ];

  it.each(commands.map((c) => [c.slice(0, 2).join(' '), c]))('verdict %s: a missing or wrong --config is a usage error (exit 2, plain text)', (name, args) => {
    const gone = verdictRun([...(args as string[]), '--config', missing]);
    expect(gone.status).toBe(2);
    expect(gone.stdout).toBe('');
    expect(gone.stderr).toBe(
      `verdict ${name}: --config: cannot read server config ${missing}: ENOENT: no such file or directory, open '${missing}'; give --config the server's server.yaml, or --data-dir its data directory\n`,
    );
    const wrong = verdictRun([...(args as string[]), '--config', misspelt]);
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(new RegExp(`^verdict ${name}: --config: ${misspelt}:1: data_dri: unknown key; rename it to data_dir.*\\n$`));
  });
});
