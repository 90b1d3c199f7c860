import * as grpc from '@grpc/grpc-js';

/** Log text for a failed call, with the fix for the cases operators meet most. */
export function describeCallError(err: unknown, kasAddress: string): string {
  const e = err as Partial<grpc.ServiceError> & { message?: string };
  switch (e.code) {
    case grpc.status.UNAUTHENTICATED:
      return `Unauthenticated: ${e.details ?? 'the server refused the agent token'}`;
    case grpc.status.UNAVAILABLE:
      if (/ENOTFOUND|EAI_AGAIN|Name resolution failed/i.test(e.details ?? '')) return `no such host for --kas-address ${kasAddress}: ${e.details}`;
      if (/ECONNREFUSED/.test(e.details ?? '')) return `connection refused by ${kasAddress}: is the server running and is --kas-address right? (${e.details})`;
      return `server unavailable at ${kasAddress}: ${e.details ?? e.message}`;
    case grpc.status.FAILED_PRECONDITION:
      return e.details ?? e.message ?? 'failed precondition';
    default:
      return e.details ?? e.message ?? String(err);
  }
}
