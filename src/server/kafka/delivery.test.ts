import kafkajs from 'kafkajs';
import type { Cluster, PartitionMetadata } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { stableAssigner } from './delivery.js';

const { AssignerProtocol } = kafkajs;

const cluster = {
  findTopicPartitionMetadata: () => Array.from({ length: 6 }, (_, i) => ({ partitionId: i }) as PartitionMetadata),
} as unknown as Cluster;

async function assign(members: { memberId: string; replica: string }[]): Promise<Record<string, number[]>> {
  const assigner = stableAssigner('any')({ cluster, groupId: 'g', logger: undefined as never });
  const out = await assigner.assign({
    members: members.map((m) => ({
      memberId: m.memberId,
      memberMetadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics: ['log'], userData: Buffer.from(m.replica) }),
    })),
    topics: ['log'],
  });
  const byReplica: Record<string, number[]> = {};
  for (const a of out) {
    const replica = members.find((m) => m.memberId === a.memberId)!.replica;
    byReplica[replica] = AssignerProtocol.MemberAssignment.decode(a.memberAssignment)!.assignment.log ?? [];
  }
  return byReplica;
}

describe('stableAssigner (delivery group)', () => {
  it('gives each replica the same partitions whatever its member id after a rejoin', async () => {
    const before = await assign([
      { memberId: 'm-1', replica: 'aaa' },
      { memberId: 'm-2', replica: 'bbb' },
    ]);
    // kafkajs member ids are new after a rejoin and may sort the other way round.
    const after = await assign([
      { memberId: 'z-9', replica: 'aaa' },
      { memberId: 'a-0', replica: 'bbb' },
    ]);
    expect(before).toEqual({ aaa: [0, 2, 4], bbb: [1, 3, 5] });
    expect(after).toEqual(before);
  });

  it('gives a lone replica everything', async () => {
    expect(await assign([{ memberId: 'm', replica: 'bbb' }])).toEqual({ bbb: [0, 1, 2, 3, 4, 5] });
  });

  it('advertises the replica id in its metadata', () => {
    const p = stableAssigner('r-42')({ cluster, groupId: 'g', logger: undefined as never }).protocol({ topics: ['log'] });
    expect(AssignerProtocol.MemberMetadata.decode(p.metadata)!.userData.toString()).toBe('r-42');
  });
});
