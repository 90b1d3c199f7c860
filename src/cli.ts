import { createRootLogger } from './shared/log/logger.js';
import { VERSION } from './shared/version.js';
import { isVerdictError } from './shared/errors.js';
import { nearMiss } from './shared/near-miss.js';

// `verdict <command>`: each command lives in src/cli/<command>.ts and is loaded
// only when used, so `verdict replay` does not pay for the server's imports.

interface Command {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number> }>;
}

const COMMANDS: Record<string, Command> = {
  demo: { summary: 'run server, agent and built-in Hubble Relay and Falco sources on SQLite (npm start)', load: () => import('./cli/demo.js') },
  server: { summary: 'run the server: agent API (gRPC), alert store, feed API', load: () => import('./cli/server.js') },
  agent: { summary: 'run the in-cluster agent', load: () => import('./cli/agent.js') },
  agents: { summary: 'register and list agents (agents register <name> --config-project <path>)', load: () => import('./cli/agents.js') },
  tokens: { summary: "create, list and revoke feed tokens, or an agent's tokens with --agent", load: () => import('./cli/tokens.js') },
  'ci-tokens': {
    summary: 'issue, list and revoke CI/CD job credentials for the CI tunnel (ci-tokens create --project <path>)',
    load: () => import('./cli/ci-tokens.js'),
  },
  kubeconfig: { summary: "print a CI/CD job's KUBECONFIG for the CI tunnel (kubeconfig --ci-token <token>)", load: () => import('./cli/kubeconfig.js') },
  gitops: {
    summary: 'show what a GitOps sync of a manifest project would change (gitops diff --project <id> --agent <name>: as that agent would apply it)',
    load: () => import('./cli/gitops.js'),
  },
  config: {
    summary: 'check agent config.yaml files offline, as the server validates them (config check <file|dir>...)',
    load: () => import('./cli/config-check.js'),
  },
  replay: { summary: 'match captured Hubble flows (hubble observe -o json) against policies, offline', load: () => import('./cli/replay.js') },
  peer: { summary: 'run a protocol peer for tests and demos (peer hubble-relay)', load: () => import('./cli/peer.js') },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    `verdict ${VERSION}: security alerts from Cilium/Hubble flows and Falco events`,
    '',
    'Usage: verdict <command> [flags]   (verdict <command> --help for its flags)',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    `  ${'version'.padEnd(width)}  print the version`,
    '',
    'Piped into a reader that closes early (| head -1), a command that already knows its exit status exits',
    'quietly with it; one cut off before it knows dies of SIGPIPE (141 under a shell, which pipefail reports).',
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  if (name === 'version' || name === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    const meant = nearMiss(name, [...Object.keys(COMMANDS), 'version']);
    process.stderr.write(`verdict: unknown command "${name}"${meant ? ` (did you mean "${meant}"?)` : ''}\n\n${help()}`);
    return 2;
  }
  try {
    const mod = await cmd.load();
    return await mod.run(rest);
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_USAGE')) {
      process.stderr.write(`${e.message}\n`);
      return 2;
    }
    // Errors users can cause carry a message that says what to do; log it as JSON like everything else.
    createRootLogger({ name: 'verdict' }).error({ error: (e as Error).message }, `verdict ${name} failed`);
    return 1;
  }
}
