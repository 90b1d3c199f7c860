// The module registry first: server.ts reaches it through agent-configs.ts, and the registry imports server.ts.
import '../../server/config/agent-config.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { AgentRegistry } from '../../server/agents/agent-registry.js';
import type { ServerModuleStartContext } from '../../server/module.js';
import { openServerDb } from '../../server/store/server-db.js';
import { SERVER_DEFAULTS } from '../../shared/config/server-config.js';
import { ciAccessServer } from './server.js';

// The proxy listener as the server starts it: kubectl sends no bearer token over plain HTTP, so a proxy without
// TLS (and no https:// URL in front) can only refuse every request as "no credentials": it says so at start.

describe('the Kubernetes API proxy at start', () => {
  const db = openServerDb(mkdtempSync(join(tmpdir(), 'verdict-ci-server-')));

  async function warningsAt(url?: string): Promise<string[]> {
    const { log, logs } = capturingLogger('info');
    const config = { ...SERVER_DEFAULTS, kubernetes_api: { listen: '127.0.0.1:0', url_path_prefix: '/', url } };
    const started = await ciAccessServer.start!({ config, log, db, agents: new AgentRegistry(db) } as unknown as ServerModuleStartContext);
    await started?.close();
    await new Promise((r) => setTimeout(r, 20));
    return logs.filter((l) => l.level === 'warn').map((l) => String(l.msg));
  }

  it('warns without TLS, not when kubeconfigs name an https:// URL in front of it', async () => {
    expect(await warningsAt()).toEqual([
      expect.stringMatching(
        /^CI tunnel: the Kubernetes API proxy is plain HTTP, and kubectl sends no bearer token over it.*; give the Verdict server a tls block, or set kubernetes_api\.url to the https:\/\/ URL/,
      ),
    ]);
    expect(await warningsAt('https://kas.example.com/k8s-proxy')).toEqual([]);
  });

  it('says an address of another machine is not one of this machine, and names kubernetes_api.listen', async () => {
    const { log } = capturingLogger('info');
    const config = { ...SERVER_DEFAULTS, kubernetes_api: { listen: '192.0.2.1:8154', url_path_prefix: '/' } };
    await expect(ciAccessServer.start!({ config, log, db, agents: new AgentRegistry(db) } as unknown as ServerModuleStartContext)).rejects.toThrow(
      /^cannot listen for the Kubernetes API proxy on 192\.0\.2\.1:8154: 192\.0\.2\.1 is not an address of this machine; set kubernetes_api\.listen to an address of this machine, e\.g\. 0\.0\.0\.0:8154/,
    );
  });
});
