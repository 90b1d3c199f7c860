import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseYamlConfig } from '../shared/config/schema.js';
import { serverConfigSchema } from '../shared/config/server-config.js';
import { run } from './server.js';

describe('verdict server --help', () => {
  afterEach(() => vi.restoreAllMocks());

  it('names every top-level key the server config takes', async () => {
    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
      out.push(String(s));
      return true;
    });
    expect(await run(['--help'])).toBe(0);
    const help = out.join('').replace(/\s+/g, ' ');
    // The keys as the config's own refusal of an unknown key lists them.
    let known = '';
    try {
      parseYamlConfig('no_such_key: 1\n', 'server.yaml', serverConfigSchema);
    } catch (e) {
      known = /known keys: ([a-z_, ]+)/.exec((e as Error).message)?.[1] ?? '';
    }
    const keys = known.split(', ');
    expect(keys).toContain('kubernetes_api');
    expect(keys).toContain('projects_dir');
    expect(help).toContain(`(keys: ${keys.join(', ')};`);
  });
});
