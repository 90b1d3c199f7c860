import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { scenarioFlows } from '../peers/hubble-relay/demo-scenario.js';
import { HubbleRelayPeer } from '../peers/hubble-relay/relay-peer.js';
import type { Flow } from '../gen/flow/flow.js';
import { flowsFromJsonLines, parseFlowLine } from '../modules/cilium/flow-json.js';
import { listenError } from '../shared/config/listen-error.js';
import { createRootLogger } from '../shared/log/logger.js';
import { listenAddressFlag, parseFlags, usageError } from './args.js';
import { waitForShutdown } from './shutdown.js';

const HELP = `Usage: verdict peer hubble-relay [flags]

Runs a Hubble Relay peer speaking observer.Observer over gRPC, for tests and demos.
Prints "listening=<host:port>" on stdout when ready.

Flags:
  --listen <host:port>   address (default 127.0.0.1:4245; port 0 picks a free one)
  --flows <file>         preload flows from a hubble observe -o json capture
  --stdin                read more flows (hubble observe -o json lines) from stdin
  --scenario demo        generate the demo's shop traffic
  --interval <ms>        time between scenario steps (default 1000)
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'hubble-relay') {
    if (sub === '--help' || sub === '-h') {
      process.stdout.write(HELP);
      return 0;
    }
    throw usageError('verdict peer: the only peer is "hubble-relay"; see `verdict peer --help`');
  }
  const { values } = parseFlags('peer hubble-relay', rest, {
    listen: { type: 'string', default: '127.0.0.1:4245' },
    flows: { type: 'string' },
    stdin: { type: 'boolean' },
    scenario: { type: 'string' },
    interval: { type: 'string', default: '1000' },
    help: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  // Every argument is checked before the peer listens: once it prints listening=, it runs until stopped.
  if (values.scenario !== undefined && values.scenario !== 'demo')
    throw usageError(`verdict peer hubble-relay: --scenario must be "demo" (the demo's shop traffic), not "${values.scenario}"`);
  const interval = Number(values.interval);
  if (!Number.isInteger(interval) || interval <= 0)
    throw usageError(`verdict peer hubble-relay: --interval must be a whole number of milliseconds above 0, e.g. --interval 1000; got "${values.interval}"`);
  listenAddressFlag('peer hubble-relay', 'listen', values.listen, 'host:port, e.g. 127.0.0.1:4245 (port 0 picks a free one)');
  const preload = values.flows === undefined ? [] : readFlows(values.flows);
  const log = createRootLogger({ name: 'verdict-relay-peer', destination: process.stderr });
  const peer = new HubbleRelayPeer();
  peer.push(preload);
  const addr = await peer.listen(values.listen).catch((e: unknown) => {
    throw listenError('for agents', values.listen, e, '--listen');
  });
  process.stdout.write(`listening=${addr}\n`);
  if (values.stdin) {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      try {
        const f = parseFlowLine(line);
        if (f) peer.push([f]);
      } catch (e) {
        log.error({ error: (e as Error).message }, 'Ignored a stdin line that is not a hubble observe -o json flow');
      }
    });
  }
  let timer: NodeJS.Timeout | undefined;
  if (values.scenario) {
    let step = 0;
    timer = setInterval(() => peer.push(scenarioFlows(step++)), interval);
  }
  await waitForShutdown(log);
  if (timer) clearInterval(timer);
  await peer.close();
  return 0;
}

/** The --flows capture; a file that cannot be read or parsed is a usage error saying what --flows takes. */
function readFlows(file: string): Flow[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${(e as Error).message})`;
    throw usageError(
      `verdict peer hubble-relay: --flows ${file} ${why}; give a file of \`hubble observe -o json\` output (one flow per line), or leave --flows out`,
    );
  }
  try {
    return flowsFromJsonLines(text);
  } catch (e) {
    throw usageError(`verdict peer hubble-relay: --flows ${file}: ${(e as Error).message}; --flows takes \`hubble observe -o json\` output, one flow per line`);
  }
}
