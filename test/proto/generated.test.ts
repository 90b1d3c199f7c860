import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, tempDir } from '../helpers/processes.js';

// src/gen must be exactly what `npm run proto` makes from proto/, so nobody
// edits generated code by hand and the protos stay the source of truth.

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe('generated protobuf code', () => {
  it('matches a fresh generation from proto/', () => {
    const out = tempDir('verdict-proto-');
    execFileSync('bash', [join(REPO, 'scripts/gen-proto.sh'), out], { cwd: REPO, stdio: 'pipe' });
    const fresh = files(out)
      .map((f) => relative(out, f))
      .sort();
    const committed = files(join(REPO, 'src/gen'))
      .map((f) => relative(join(REPO, 'src/gen'), f))
      .sort();
    expect(committed).toEqual(fresh);
    for (const f of fresh) {
      expect(readFileSync(join(REPO, 'src/gen', f), 'utf8'), `${f} differs: run npm run proto`).toBe(readFileSync(join(out, f), 'utf8'));
    }
  });

  it('keeps Hubble field numbers on the wire', async () => {
    const { Flow } = await import('../../src/gen/flow/flow.js');
    const { flowFromJson } = await import('../../src/modules/cilium/flow-json.js');
    const f = flowFromJson({ flow: { verdict: 'DROPPED', drop_reason_desc: 'POLICY_DENIED', uuid: 'u', egress_denied_by: [{ name: 'p' }] } });
    const bytes = Buffer.from(Flow.encode(f).finish());
    // verdict = field 2 varint (tag 0x10), value 2; drop_reason_desc = field 25 varint (tag 0xc8 0x01), 133.
    expect(bytes.includes(Buffer.from([0x10, 0x02]))).toBe(true);
    expect(bytes.includes(Buffer.from([0xc8, 0x01, 0x85, 0x01]))).toBe(true);
    // uuid = field 34, length-delimited: tag (34 << 3 | 2) = 274 = 0x92 0x02.
    expect(bytes.includes(Buffer.from([0x92, 0x02, 0x01, 0x75]))).toBe(true);
    // egress_denied_by = field 21004, length-delimited: tag 168034 = 0xe2 0xa0 0x0a.
    expect(bytes.includes(Buffer.from([0xe2, 0xa0, 0x0a]))).toBe(true);
  });
});
