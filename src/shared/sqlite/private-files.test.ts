import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { verdictRun } from '../../../test/helpers/processes.js';
import { openAgentDb } from '../../agent/spool/agent-db.js';
import { startServer } from '../../server/server.js';
import { openServerDb } from '../../server/store/server-db.js';
import { SERVER_DEFAULTS } from '../config/server-config.js';

// The server's database holds webhook URLs with their secrets, and the agent's its spool of alerts: neither may be
// readable by other users of the machine.

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

async function runServer(dataDir: string) {
  const { log, logs } = capturingLogger();
  const server = await startServer({ ...SERVER_DEFAULTS, data_dir: dataDir, http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0' }, log);
  return { server, logs };
}

describe('data directory and database permissions', () => {
  it('makes the server data directory 0700 and server.db, -wal and -shm 0600', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'verdict-perm-')), 'new', 'data');
    const { server, logs } = await runServer(dir);
    try {
      expect(mode(dir)).toBe('700');
      expect(mode(join(dir, 'server.db'))).toBe('600');
      expect(mode(join(dir, 'server.db-wal'))).toBe('600');
      expect(mode(join(dir, 'server.db-shm'))).toBe('600');
      expect(logs.filter((l) => l.level === 'warn')).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it("makes the agent's data directory 0700 and agent.db, -wal and -shm 0600", () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'verdict-perm-')), 'agent');
    const db = openAgentDb(dir);
    try {
      // The first write makes the WAL.
      db.exec('CREATE TABLE probe (x)');
      expect(mode(dir)).toBe('700');
      for (const f of ['agent.db', 'agent.db-wal', 'agent.db-shm']) expect(mode(join(dir, f))).toBe('600');
    } finally {
      db.close();
    }
  });

  it('narrows database files an older Verdict left readable, and warns once about an existing open directory without changing it', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'verdict-perm-')), 'data');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    // An empty file is an empty SQLite database, as an older Verdict's would be before its first start.
    writeFileSync(join(dir, 'server.db'), '', { mode: 0o644 });
    chmodSync(join(dir, 'server.db'), 0o644);
    const { server, logs } = await runServer(dir);
    try {
      expect(mode(join(dir, 'server.db'))).toBe('600');
      expect(mode(join(dir, 'server.db-wal'))).toBe('600');
      expect(mode(dir)).toBe('755');
      expect(logs.filter((l) => l.level === 'warn')).toEqual([
        expect.objectContaining({
          mod_name: 'store',
          data_dir: dir,
          mode: '0755',
          msg: `Data directory is open to other users; the database files in it are kept to this user (0600), run chmod 700 ${dir} to close the directory too`,
        }),
      ]);
      expect(logs).toContainEqual(expect.objectContaining({ level: 'info', file: join(dir, 'server.db'), was_mode: '0644' }));
    } finally {
      await server.close();
    }
  });

  it("a command's warning about the directory goes to stderr as plain text, leaving stdout its answer", () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'verdict-perm-')), 'data');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    openServerDb(dir, { info() {}, warn() {} }).close();
    const r = verdictRun(['agents', 'list', '--json', '--data-dir', dir]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
    expect(r.stderr).toBe(
      `verdict agents list: Data directory is open to other users; the database files in it are kept to this user (0600), run chmod 700 ${dir} to close the directory too\n`,
    );
  });
});

describe('data directory permissions on a Kubernetes volume, and files this user may not open', () => {
  it("leaves quiet the group bits a volume's fsGroup gives (2770, 0660): files narrowed at debug, no warning", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'verdict-perm-')), 'data');
    mkdirSync(dir);
    // What the kubelet makes of a volume with fsGroup at every mount: the directory setgid and group-writable, files 0660.
    chmodSync(dir, 0o2770);
    writeFileSync(join(dir, 'server.db'), '');
    chmodSync(join(dir, 'server.db'), 0o660);
    const { log, logs } = capturingLogger('debug');
    const server = await startServer({ ...SERVER_DEFAULTS, data_dir: dir, http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0' }, log);
    try {
      expect(mode(join(dir, 'server.db'))).toBe('600');
      expect(logs.filter((l) => l.level === 'warn' || /users/.test(String(l.msg)))).toEqual([]);
      expect(logs).toContainEqual(
        expect.objectContaining({
          level: 'debug',
          file: join(dir, 'server.db'),
          was_mode: '0660',
          msg: "Database file was readable by its group (a volume's fsGroup); made it 0600",
        }),
      );
    } finally {
      await server.close();
    }
  });

  it('a database file this user may not open stops the command saying whose the directory must be, not a bare EACCES', () => {
    const top = mkdtempSync(join(tmpdir(), 'verdict-perm-'));
    const dir = join(top, 'data');
    openServerDb(dir, { info() {}, warn() {} }).close();
    const root = process.getuid?.() === 0;
    if (root) {
      // root opens any file: the command runs as another user, whose the directory is not.
      chmodSync(top, 0o755);
      chmodSync(dir, 0o777);
    } else chmodSync(join(dir, 'server.db'), 0o000);
    const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'verdict.js'), 'agents', 'list', '--data-dir', dir], {
      encoding: 'utf8',
      timeout: 20_000,
      ...(root ? { uid: 65534, gid: 65534 } : {}),
    });
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toContain(
      `cannot open the database ${join(dir, 'server.db')}: permission denied; the data directory ${dir} and the files in it must belong to the user running Verdict (uid ${root ? 65534 : process.getuid?.()})`,
    );
    expect(r.stdout + r.stderr).not.toContain('EACCES');
  });
});
