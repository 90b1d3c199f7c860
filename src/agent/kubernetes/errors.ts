import { isVerdictError, VerdictError } from '../../shared/errors.js';

// The Kubernetes API server's refusals and failures as the project's one error
// type (VERDICT_KUBE_API), for every module that talks to it (the Cilium policy
// watch, GitOps): details hold the HTTP status, the Status reason and, when the
// server gave them, its causes; the message is the Status message users read.

/** A cause of a Kubernetes Status (a field and what is wrong with it). */
export interface KubeStatusCause {
  field?: string;
  message?: string;
}

/** A VERDICT_KUBE_API error: status 0 when the answer was no HTTP error (a watch line that is not JSON). */
export function kubeApiError(status: number, reason: string, message: string, causes?: readonly KubeStatusCause[]): VerdictError {
  return new VerdictError('VERDICT_KUBE_API', message, { details: { status, reason, ...(causes ? { causes } : {}) } });
}

/** The HTTP status of a Kubernetes API error (VERDICT_KUBE_API), else undefined. */
export function kubeApiStatus(e: unknown): number | undefined {
  return isVerdictError(e, 'VERDICT_KUBE_API') ? (e.details?.status as number | undefined) : undefined;
}

/** The Status reason of a Kubernetes API error ('' when the server gave none), else undefined. */
export function kubeApiReason(e: unknown): string | undefined {
  return isVerdictError(e, 'VERDICT_KUBE_API') ? ((e.details?.reason as string | undefined) ?? '') : undefined;
}

/** The Status causes of a Kubernetes API error, [] when it has none. */
export function kubeApiCauses(e: unknown): readonly KubeStatusCause[] {
  return isVerdictError(e, 'VERDICT_KUBE_API') ? ((e.details?.causes as readonly KubeStatusCause[] | undefined) ?? []) : [];
}
