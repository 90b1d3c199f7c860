import { globProblem } from '../../shared/config/glob.js';
import { hostPort } from '../../shared/config/host-port.js';
import { bool, duration, field, list, obj, oneOf, refine, str, type Validator } from '../../shared/config/schema.js';
import { namespaceNameProblem } from './namespace-name.js';

// The `cilium` block of config.yaml: where Hubble Relay is, which labelled
// policies to match dropped flows against, and which of them may alert.

const RELAY_HINT = "Hubble Relay's gRPC host:port, usually port 80 of the hubble-relay Service, e.g. hubble-relay.kube-system.svc.cluster.local:80";
const relayAddress = hostPort(RELAY_HINT, { dial: true });

export const ciliumBlock = obj({
  hubble_relay_address: field(relayAddress, { required: true }),
  /** Policy manifests inside the configuration project, by glob. */
  policies: field(list(obj({ glob: field(refine(str({ nonEmpty: true }), globProblem), { required: true }) })), { default: [] }),
  /**
   * Namespaces whose policies may raise alerts for this agent. The project label
   * of the original was user-controlled; namespace ownership is not.
   * Empty means every namespace (and clusterwide policies).
   */
  alert_namespaces: field(list(refine(str({ nonEmpty: true }), namespaceNameProblem)), { default: [] }),
  /** Whether clusterwide policies may raise alerts for this agent. */
  alert_clusterwide: field(bool(), { default: true }),
  cluster_name: field(str(), { default: '' }),
  /**
   * Also list and watch policies from the Kubernetes API server: "auto" does
   * so when the agent can reach one (in a pod, or given --kubeconfig or KUBECONFIG).
   */
  kubernetes_policies: field(oneOf(['auto', 'on', 'off'] as const), { default: 'auto' }),
  reconnect: field(
    obj({
      initial_backoff: field(duration({ min: 1 }), { default: 10_000 }),
      max_backoff: field(duration({ min: 1 }), { default: 300_000 }),
    }),
    { default: { initial_backoff: 10_000, max_backoff: 300_000 } },
  ),
  /** Window in which repeats of the same drop fold into one alert with a count. */
  dedup_window: field(duration({ min: 0 }), { default: 10_000 }),
});

export type CiliumConfig = typeof ciliumBlock extends Validator<infer T> ? T : never;
