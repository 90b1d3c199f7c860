import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { scenarioFlows } from '../peers/hubble-relay/demo-scenario.js';
import { HubbleRelayPeer } from '../peers/hubble-relay/relay-peer.js';
import { flowsFromJsonLines, parseFlowLine } from '../modules/cilium/flow-json.js';
import { createRootLogger } from '../shared/log/logger.js';
import { parseFlags, usageError } from './args.js';
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
  const log = createRootLogger({ name: 'verdict-relay-peer', destination: process.stderr });
  const peer = new HubbleRelayPeer();
  if (values.flows) peer.push(flowsFromJsonLines(readFileSync(values.flows, 'utf8')));
  const addr = await peer.listen(values.listen);
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
    if (values.scenario !== 'demo') throw usageError('verdict peer hubble-relay: --scenario must be "demo"');
    let step = 0;
    timer = setInterval(() => peer.push(scenarioFlows(step++)), Number(values.interval));
  }
  await waitForShutdown(log);
  if (timer) clearInterval(timer);
  await peer.close();
  return 0;
}
