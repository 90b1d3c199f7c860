// Whether an applied object has become what it says: kstatus' rules
// (sigs.k8s.io/cli-utils/pkg/kstatus) for the core kinds, and its generic
// rules (observedGeneration, Ready/Reconciling/Stalled conditions) for the
// rest. Current means reconciled; InProgress keeps the sync waiting.

export type Status = 'Current' | 'InProgress' | 'Failed' | 'Terminating' | 'NotFound' | 'Unknown';

export interface Computed {
  status: Status;
  message: string;
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

type Obj = { kind?: string; metadata?: { generation?: number; deletionTimestamp?: string }; spec?: Record<string, unknown>; status?: Record<string, unknown> };

const num = (v: unknown, d = 0): number => (typeof v === 'number' ? v : d);

function cond(o: Obj, type: string): Condition | undefined {
  const list = o.status?.conditions;
  return Array.isArray(list) ? (list as Condition[]).find((c) => c?.type === type) : undefined;
}

const current = (message = 'Resource is current'): Computed => ({ status: 'Current', message });
const progress = (message: string): Computed => ({ status: 'InProgress', message });

export function computeStatus(object: object | undefined): Computed {
  const o = object as Obj | undefined;
  if (!o) return { status: 'NotFound', message: 'Resource not found' };
  if (o.metadata?.deletionTimestamp) return { status: 'Terminating', message: 'Resource scheduled for deletion' };
  const gen = o.metadata?.generation;
  const observed = o.status?.observedGeneration;
  if (typeof gen === 'number' && typeof observed === 'number' && observed < gen)
    return progress(`${o.kind} generation is ${gen}, but latest observed generation is ${observed}`);
  const specific = byKind[o.kind ?? '']?.(o);
  if (specific) return specific;
  // Generic rules: abnormal-true conditions.
  const stalled = cond(o, 'Stalled');
  if (stalled?.status === 'True') return { status: 'Failed', message: stalled.message ?? 'Stalled' };
  const reconciling = cond(o, 'Reconciling');
  if (reconciling?.status === 'True') return progress(reconciling.message ?? 'Reconciling');
  const ready = cond(o, 'Ready');
  if (ready?.status === 'False') return progress(ready.message ?? 'Not ready');
  return current();
}

const byKind: Record<string, (o: Obj) => Computed | undefined> = {
  Namespace: (o) => (o.status?.phase === 'Terminating' ? { status: 'Terminating', message: 'Namespace is terminating' } : current()),
  CustomResourceDefinition: (o) => {
    const names = cond(o, 'NamesAccepted');
    if (names?.status === 'False') return { status: 'Failed', message: names.message ?? 'CRD names not accepted' };
    return cond(o, 'Established')?.status === 'True' ? current() : progress('CRD is not established');
  },
  Deployment: (o) => {
    const want = num(o.spec?.replicas, 1);
    const p = cond(o, 'Progressing');
    if (p?.reason === 'ProgressDeadlineExceeded') return { status: 'Failed', message: `Progress deadline exceeded: ${p.message ?? ''}`.trim() };
    if (o.status?.observedGeneration === undefined) return progress('Deployment not observed by its controller yet');
    const s = o.status ?? {};
    if (num(s.updatedReplicas) < want) return progress(`Updated: ${num(s.updatedReplicas)}/${want}`);
    if (num(s.replicas) > num(s.updatedReplicas)) return progress(`Pending termination: ${num(s.replicas) - num(s.updatedReplicas)}`);
    if (num(s.availableReplicas) < want) return progress(`Available: ${num(s.availableReplicas)}/${want}`);
    if (num(s.readyReplicas) < want) return progress(`Ready: ${num(s.readyReplicas)}/${want}`);
    return current(`Deployment is available. Replicas: ${num(s.replicas)}`);
  },
  StatefulSet: (o) => {
    const want = num(o.spec?.replicas, 1);
    const s = o.status ?? {};
    if (s.observedGeneration === undefined) return progress('StatefulSet not observed by its controller yet');
    if (num(s.readyReplicas) < want) return progress(`Ready: ${num(s.readyReplicas)}/${want}`);
    if (num(s.currentReplicas) < want && s.updateRevision !== s.currentRevision) return progress(`Updated: ${num(s.currentReplicas)}/${want}`);
    return current(`All replicas scheduled as expected. Replicas: ${want}`);
  },
  DaemonSet: (o) => {
    const s = o.status ?? {};
    if (s.observedGeneration === undefined) return progress('DaemonSet not observed by its controller yet');
    const want = num(s.desiredNumberScheduled);
    if (num(s.updatedNumberScheduled) < want) return progress(`Updated: ${num(s.updatedNumberScheduled)}/${want}`);
    if (num(s.numberAvailable) < want) return progress(`Available: ${num(s.numberAvailable)}/${want}`);
    return current(`All replicas scheduled as expected. Replicas: ${want}`);
  },
  ReplicaSet: (o) => {
    const want = num(o.spec?.replicas, 1);
    const s = o.status ?? {};
    if (num(s.availableReplicas) < want) return progress(`Available: ${num(s.availableReplicas)}/${want}`);
    return current();
  },
  Pod: (o) => {
    const phase = o.status?.phase;
    if (phase === 'Succeeded') return current('Pod has completed successfully');
    if (phase === 'Failed') return { status: 'Failed', message: 'Pod has failed' };
    if (phase === 'Running' && cond(o, 'Ready')?.status === 'True') return current('Pod is Ready');
    return progress(`Pod phase is ${String(phase ?? 'Pending')}`);
  },
  PersistentVolumeClaim: (o) => (o.status?.phase === 'Bound' ? current('PVC is Bound') : progress('PVC is not Bound')),
  Service: (o) => {
    if (o.spec?.type !== 'LoadBalancer') return current('Service is ready');
    const ingress = (o.status?.loadBalancer as { ingress?: unknown[] } | undefined)?.ingress;
    return ingress?.length ? current('Service is ready') : progress('LoadBalancer has no ingress yet');
  },
  Job: (o) => {
    if (cond(o, 'Failed')?.status === 'True') return { status: 'Failed', message: 'Job Failed' };
    if (cond(o, 'Complete')?.status === 'True') return current('Job Completed');
    // kstatus: a started job is Current; it need not finish for the sync to go on.
    return o.status?.startTime ? current('Job in progress') : progress('Job not started');
  },
  PodDisruptionBudget: (o) => (o.status?.observedGeneration === undefined ? progress('PDB not observed yet') : current()),
};
