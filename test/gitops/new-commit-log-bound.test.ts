import { describe, expect, it } from 'vitest';
import { logNewCommit, NEW_COMMITS_KEPT } from '../../src/modules/gitops/new-commit-log.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { capturingLogger } from './harness.js';

// `GitOps: new commit` is logged once per commit, agent and project (the
// server's side is in new-commit-log.test.ts). What it keeps for that is
// bounded: agents and projects come and go over a server's life, and the
// entries of those sent nothing for longest go first. One dropped only logs
// its commit as new again when it is sent again.

describe('GitOps: new commit, what the server keeps for it', () => {
  it('keeps the most recently sent agents and projects up to the bound; the least recently sent one goes first', () => {
    const config = { ...SERVER_DEFAULTS };
    const { log, logs } = capturingLogger('debug');
    const send = (agent: string) => logNewCommit(config, log.child({ agent }), { agent, projectId: 'group/app', commit: 'c1', ref: 'HEAD' });
    const lines = (agent: string) => logs.filter((l) => l.agent === agent).map((l) => `${l.level} ${l.msg}`);

    send('kept');
    send('gone');
    for (let i = 0; i < NEW_COMMITS_KEPT - 2; i++) send(`agent-${i}`);
    // Sent again: now the most recently sent, so the next one in drops "gone", not "kept".
    send('kept');
    send('one-more');

    send('kept');
    send('gone');
    expect(lines('kept')).toEqual(['info GitOps: new commit', 'debug GitOps: sending the same commit again', 'debug GitOps: sending the same commit again']);
    expect(lines('gone')).toEqual(['info GitOps: new commit', 'info GitOps: new commit']);
  });
});
