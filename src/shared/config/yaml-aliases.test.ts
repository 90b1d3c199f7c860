import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../server/config/agent-config.js';
import { ConfigError, parseYamlConfig } from './schema.js';
import { serverConfigSchema } from './server-config.js';

// Anchors, aliases and merge keys in config.yaml and server.yaml, as GitLab's Go YAML parser reads them.

const file = '.gitlab/agents/a/config.yaml';
const refusal = (text: string) => {
  try {
    parseAgentConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => `${i.line}: ${i.path}: ${i.message}`);
    throw e;
  }
  throw new Error('expected the configuration to be refused');
};

describe('YAML anchors, aliases and merge keys', () => {
  it('reads aliases and merge keys as the values they name', () => {
    const { value, warnings } = parseAgentConfig(
      [
        'x-defaults: &d',
        '  access_as:',
        '    agent: {}',
        'x-envs: &envs [production, staging]',
        'ci_access:',
        '  groups:',
        '    - id: group/a',
        '      <<: *d',
        '    - id: group/b',
        '      <<: *d',
        '      environments: *envs',
        '  projects:',
        '    - id: group/p',
        '      access_as: { ci_job: {} }',
        '      <<: [*d, { environments: [review] }]',
        '',
      ].join('\n'),
      file,
    );
    expect(value.ci_access).toEqual({
      groups: [
        { id: 'group/a', access_as: { agent: {} } },
        { id: 'group/b', access_as: { agent: {} }, environments: ['production', 'staging'] },
      ],
      // A key set in the mapping wins over a merged one; merged keys fill the rest.
      projects: [{ id: 'group/p', access_as: { ci_job: {} }, environments: ['review'] }],
    });
    // Sections that hold anchors are ignored as configuration, and say why.
    expect(warnings.map((w) => `${w.line}: ${w.path}: ${w.message}`)).toEqual([
      '1: x-defaults: unknown section, ignored: its value is read only where *d is used',
      '4: x-envs: unknown section, ignored: its value is read only where *envs is used',
    ]);
  });

  it('says a section is read through its aliases only when an alias uses it, and keeps the did-you-mean hint', () => {
    const warn = (text: string) => parseAgentConfig(text, file).warnings.map((w) => `${w.line}: ${w.path}: ${w.message}`);
    // *o is never used: a misspelt section with an anchor is still a misspelt section.
    expect(warn('observabilty: &o\n  logging:\n    level: info\n')).toEqual([
      '1: observabilty: unknown section, ignored: no version of the GitLab agent or of Verdict has it (did you mean "observability"?)',
    ]);
    expect(warn('observabilty: &o\n  logging:\n    level: info\nobservability: *o\n')).toEqual([
      '1: observabilty: unknown section, ignored: its value is read only where *o is used (did you mean "observability"?)',
    ]);
    // x-b is a copy of x-a's value, which keeps the anchor's name: it is not where *a reads from.
    expect(warn('x-a: &a { k: 1 }\nx-b: *a\n')).toEqual([
      '1: x-a: unknown section, ignored: its value is read only where *a is used',
      '2: x-b: unknown section, ignored: no version of the GitLab agent or of Verdict has it',
    ]);
  });

  it('reports a problem with an aliased value at the anchor, naming the alias that used it', () => {
    expect(refusal('x: &envs [production, 7]\nci_access:\n  projects:\n    - id: g/p\n      environments: *envs\n')).toEqual([
      '1: ci_access.projects[0].environments[1]: must be a string (quote it: "7") (used through *envs at line 5)',
    ]);
  });

  it('through nested aliases, names the alias used here and the line where the value is written', () => {
    // 7 is written under &a; *b, at line 6, is what put it here.
    const text = 'x: &a 7\ny: &b [production, *a]\nci_access:\n  projects:\n    - id: g/p\n      environments: *b\n';
    expect(refusal(text)).toEqual(['1: ci_access.projects[0].environments[1]: must be a string (quote it: "7") (used through *b at line 6)']);
  });

  it('explains aliases that name no anchor, and keeps the hint to quote a value starting with "*"', () => {
    expect(refusal('gitops:\n  manifest_projects:\n    - id: g/p\n      paths:\n        - glob: **/*.yaml\n')).toEqual([
      '5: gitops.manifest_projects[0].paths[0].glob: is a YAML alias (**/*.yaml) naming no anchor: a glob starting with "*" must be quoted, glob: "**/*.yaml"',
    ]);
    expect(refusal('ci_access:\n  projects:\n    - id: g/p\n      environments: *envs\nx: &envs [a]\n')).toEqual([
      '4: ci_access.projects[0].environments: is a YAML alias (*envs) naming no anchor: set &envs on a value before it (key: &envs value), or write the value out',
    ]);
    expect(refusal('ci_access:\n  projects:\n    - id: g/p\n      <<: [*d, 5]\n')).toEqual([
      '4: ci_access.projects[0].<<: *d names no anchor set before it; a merge key takes a mapping, e.g. <<: *defaults with defaults: &defaults { ... }, or a list of them, <<: [*a, *b]',
      '4: ci_access.projects[0].<<: a merge key takes a mapping, e.g. <<: *defaults with defaults: &defaults { ... }, or a list of them, <<: [*a, *b]',
    ]);
  });

  it('reports a merge key problem inside an ignored section as a warning, like its other problems', () => {
    const checked = (text: string) => {
      const { warnings } = parseAgentConfig(text, file);
      return warnings.map((w) => `${w.line}: ${w.path}: ${w.message}`);
    };
    const merge = 'a merge key takes a mapping, e.g. <<: *defaults with defaults: &defaults { ... }, or a list of them, <<: [*a, *b]';
    expect(checked('user_access:\n  <<: 5\n')).toContain(
      `2: user_access.<<: ${merge} (the GitLab agent would refuse this; Verdict does not use user_access, so it is ignored)`,
    );
    expect(checked('x-notes:\n  <<: [1]\n')).toEqual([
      '1: x-notes: unknown section, ignored: no version of the GitLab agent or of Verdict has it',
      `2: x-notes.<<: ${merge} (the GitLab agent would refuse this; Verdict does not use x-notes, so it is ignored)`,
    ]);
    // Where Verdict reads the value, it stays an error.
    expect(refusal('ci_access:\n  <<: 5\n')).toEqual([`2: ci_access.<<: ${merge}`]);
  });

  it('refuses an alias inside its own anchor and an alias bomb, at their line', () => {
    expect(refusal('x: &a [1, *a]\n')).toEqual(['1: x[1]: the alias *a is inside the value anchored &a, which would never end; write the inner value out']);
    const bomb = ['a0: &a0 [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 10; i++)
      bomb.push(
        `a${i}: &a${i} [${Array(9)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    // At the outer alias: its line and the path where it is written, not a node deep inside its copies.
    expect(refusal(`${bomb.join('\n')}\n`)).toEqual([
      '6: a5[0]: aliases expand to more than 100000 values (an alias bomb); write the values out or nest fewer aliases',
    ]);
  });

  it('resolves aliases in server.yaml', () => {
    const { value } = parseYamlConfig('http_addr: &addr 127.0.0.1:9000\nkubernetes_api: { listen: *addr }\n', 'server.yaml', serverConfigSchema);
    expect(value.http_addr).toBe('127.0.0.1:9000');
    expect(value.kubernetes_api?.listen).toBe('127.0.0.1:9000');
  });
});
