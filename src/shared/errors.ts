import { status as grpcStatus } from '@grpc/grpc-js';

// The one error type of the project. Every error a user can cause or must act
// on is a VerdictError with a code from this table; the table is the only place
// that maps a code to an HTTP status (the feed's fastify error handler) and to
// a gRPC status (the agent API), and names it in the HTTP API's `error` field
// (`api`). Messages say what happened and what to do.
// docs/errors.md lists the codes.

export const ERROR_CODES = {
  /** A flag or argument of a `verdict` command is wrong. */
  VERDICT_USAGE: { http: 400, grpc: grpcStatus.INVALID_ARGUMENT, api: 'bad_request' },
  /** A request parameter or body, or a flag value a running process checks (--kas-address), is invalid; the message names it. */
  VERDICT_BAD_REQUEST: { http: 400, grpc: grpcStatus.INVALID_ARGUMENT, api: 'bad_request' },
  /** A configuration file (server config, config.yaml) is invalid; `issues` lists file:line: path: problem. */
  VERDICT_CONFIG_INVALID: { http: 400, grpc: grpcStatus.FAILED_PRECONDITION, api: 'invalid_config' },
  /** No or an unknown credential. */
  VERDICT_UNAUTHENTICATED: { http: 401, grpc: grpcStatus.UNAUTHENTICATED, api: 'unauthorized' },
  /** The credential is valid but lacks the scope or permission. */
  VERDICT_FORBIDDEN: { http: 403, grpc: grpcStatus.PERMISSION_DENIED, api: 'forbidden' },
  /** No such alert, agent, integration, token or project. */
  VERDICT_NOT_FOUND: { http: 404, grpc: grpcStatus.NOT_FOUND, api: 'not_found' },
  /** The change conflicts with the current state (e.g. a stale status update). */
  VERDICT_CONFLICT: { http: 409, grpc: grpcStatus.ABORTED, api: 'conflict' },
  /** Too many requests or failed logins; retry later. */
  VERDICT_RATE_LIMITED: { http: 429, grpc: grpcStatus.RESOURCE_EXHAUSTED, api: 'too_many_requests' },
  /** Verdict is out of room or behind (a full queue); retry later. */
  VERDICT_OVERLOADED: { http: 503, grpc: grpcStatus.RESOURCE_EXHAUSTED, api: 'unavailable' },
  /** A component Verdict needs (Kafka, the database) is unreachable for now; retry later. */
  VERDICT_UNAVAILABLE: { http: 503, grpc: grpcStatus.UNAVAILABLE, api: 'unavailable' },
  /** Agent and server versions differ in major.minor. */
  VERDICT_VERSION_MISMATCH: { http: 400, grpc: grpcStatus.FAILED_PRECONDITION, api: 'version_mismatch' },
  /** A Falco event cannot be read. */
  VERDICT_FALCO_EVENT_INVALID: { http: 400, grpc: grpcStatus.INVALID_ARGUMENT, api: 'bad_request' },
  /** A network policy cannot be parsed; the message names the file and policy. */
  VERDICT_POLICY_INVALID: { http: 400, grpc: grpcStatus.INVALID_ARGUMENT, api: 'bad_request' },
  /** A webhook URL resolves to an address Verdict refuses to deliver to. */
  VERDICT_WEBHOOK_ADDRESS_REFUSED: { http: 400, grpc: grpcStatus.INVALID_ARGUMENT, api: 'refused_address' },
  /** A commit's manifests cannot be synchronised: a file that does not decode, an invalid or cyclic depends-on; the message names the file. */
  VERDICT_MANIFEST_INVALID: { http: 400, grpc: grpcStatus.INVALID_ARGUMENT, api: 'invalid_manifest' },
  /**
   * A manifest project's files cannot be sent as they are (a glob's syntax, a path two globs match, a file that
   * is not a regular one, over 1000 files, 5 MiB per file or 20 MiB in all): the project or its globs must change, a retry will not help.
   */
  VERDICT_MANIFEST_FILES: { http: 400, grpc: grpcStatus.FAILED_PRECONDITION, api: 'invalid_manifest_files' },
  /** Reading a configuration project with git failed. */
  VERDICT_GIT: { http: 500, grpc: grpcStatus.FAILED_PRECONDITION, api: 'git' },
  /** The Kubernetes API server refused or failed a request; the message carries its status and reason. */
  VERDICT_KUBE_API: { http: 502, grpc: grpcStatus.UNAVAILABLE, api: 'kubernetes_api' },
  /** Kafka refused or failed a request; the message says what Kafka answered and what to do. */
  VERDICT_KAFKA: { http: 503, grpc: grpcStatus.UNAVAILABLE, api: 'kafka_unavailable' },
  /** A change is in the Kafka log but this replica has not applied it yet; it shows once the replica catches up. */
  VERDICT_PENDING: { http: 503, grpc: grpcStatus.UNAVAILABLE, api: 'pending' },
  /** A message in the Kafka log that this replica cannot read (skipped, not applied). */
  VERDICT_LOG_MESSAGE_INVALID: { http: 500, grpc: grpcStatus.INTERNAL, api: 'internal' },
  /** A bug: the message and the log have the details. */
  VERDICT_INTERNAL: { http: 500, grpc: grpcStatus.INTERNAL, api: 'internal' },
} as const satisfies Record<string, { http: number; grpc: grpcStatus; api: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface VerdictErrorOptions {
  cause?: unknown;
  /** Structured details for API answers (e.g. config issues, the Kubernetes status). */
  details?: Readonly<Record<string, unknown>>;
}

export class VerdictError extends Error {
  override readonly name = 'VerdictError';
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: VerdictErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.details = options.details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  get grpcStatus(): grpcStatus {
    return ERROR_CODES[this.code].grpc;
  }
}

/** Whether `e` is a VerdictError, optionally of one of `codes`. */
export function isVerdictError(e: unknown, ...codes: ErrorCode[]): e is VerdictError {
  return e instanceof VerdictError && (codes.length === 0 || codes.includes(e.code));
}
