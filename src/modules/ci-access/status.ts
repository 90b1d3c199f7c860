// Errors on the CI/CD tunnel reach kubectl as Kubernetes Status objects, so it
// prints their message as it prints the API server's own. The message says
// which side failed (the original's users' complaint was that it did not):
// "Verdict server: …" or "Verdict agent: …", and what to do.

export type Side = 'server' | 'agent';

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/** A metav1.Status body for an HTTP error. */
export function statusBody(code: number, side: Side, message: string): string {
  return JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `Verdict ${side}: ${message}`,
    reason: REASONS[code] ?? 'InternalError',
    code,
  });
}

export const STATUS_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' } as const;
