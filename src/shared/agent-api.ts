// What agent and server agree on for the tunnel, besides the protobuf API:
// the WebSocket path on the server's HTTP listener and the subprotocol, the
// same as the original agent's, so proxies configured for it work unchanged.

/** Path of the agent WebSocket on the server's HTTP address; --kas-address must end with it (trailing slash included). */
export const AGENT_WS_PATH = '/-/kubernetes-agent/';

/** WebSocket subprotocol that carries gRPC between agent and server. */
export const AGENT_WS_SUBPROTOCOL = 'ws-tunnel';

/**
 * The largest gRPC message of the agent API, the original agent's and KAS's
 * 10 MiB: the server's receive limit and the agent's send and receive limits,
 * so the agent keeps its messages below this one limit (the alert publisher
 * cuts its batches by it).
 */
export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;

/**
 * The details of the UNAVAILABLE status a server ends its agents' streams with when it shuts down cleanly: the agent
 * logs such an end at info and reconnects, where anything else that ends a stream (a proxy resetting it, a fault) is
 * an error it reports.
 */
export const SERVER_SHUTTING_DOWN = 'the server is shutting down';

/**
 * The `commit_id` of a ConfigurationResponse reporting (in `invalid_reason`) that the configuration project has no
 * commit yet. Not '': agents from before the report existed start with '' as the invalid commit they logged, and
 * would take a report with '' for one logged already and say nothing.
 */
export const NO_COMMIT_ID = '(no commit)';
