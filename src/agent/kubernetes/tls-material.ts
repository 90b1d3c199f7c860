import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { errText } from '../../shared/log/logger.js';

// The TLS material of a kubeconfig cluster and user (CA, client certificate and
// key, tls-server-name, insecure-skip-tls-verify, proxy-url), read once and
// again only when a file changes. The client library reads the CA and
// certificate files for every request; the agent sends thousands a minute
// (GitOps syncs, the CI tunnel) and the files change seldom. They do change:
// in a pod the CA (kube-root-ca.crt, projected) is rotated with the cluster's
// CA, and a kubeconfig's client certificate may be renewed in place, so a
// long-running agent checks them instead of keeping the first read forever.

/** How often the files are looked at (a stat each, not a read): a rotated CA is used within this much time. */
export const TLS_FILE_CHECK_MS = 1000;

/** What decides which connections to the API server a request may share: one object per version of it. */
export interface TlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer | string;
  readonly key?: Buffer | string;
  readonly servername?: string;
  readonly rejectUnauthorized?: boolean;
  readonly proxy?: string;
}

/** The material as options of tls.connect (and so of an https request or agent). */
export type TlsConnectOptions = Omit<TlsMaterial, 'proxy'> & { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined };

const connectOptions = new WeakMap<TlsMaterial, TlsConnectOptions>();

/**
 * The options for connections with this material, made once per material. A
 * tls-server-name that is an IP address is not sent as the TLS ServerName
 * (RFC 6066 allows host names only, and Node prints a DeprecationWarning for
 * one) but is still what the certificate must name, as client-go checks it.
 */
export function tlsConnectOptions(m: TlsMaterial): TlsConnectOptions {
  let o = connectOptions.get(m);
  if (!o) {
    const { proxy: _, ...rest } = m;
    const ip = m.servername && isIP(m.servername) ? m.servername : undefined;
    // "" and not undefined: Node's https agent would otherwise send the URL's host name.
    o = ip ? { ...rest, servername: '', checkServerIdentity: (_host, cert) => checkServerIdentity(ip, cert) } : rest;
    connectOptions.set(m, o);
  }
  return o;
}

/** Where each part comes from: a file (read, then checked for changes) or data given inline (base64, as in a kubeconfig). */
interface TlsSources {
  caFile?: string;
  caData?: string;
  certFile?: string;
  certData?: string;
  keyFile?: string;
  keyData?: string;
  servername?: string;
  rejectUnauthorized?: boolean;
  proxy?: string;
}

interface Watched {
  readonly path: string;
  /** inode, size, mtime and ctime: kubelet swaps a projected file by renaming a directory, which changes the inode. */
  stamp: string;
  bytes: Buffer;
}

export class TlsFiles {
  private readonly files: { ca?: Watched; cert?: Watched; key?: Watched } = {};
  private material: TlsMaterial;
  private checkedAt: number;

  /** Reads the files now: a missing or unreadable one is an error of the connection, with its name. */
  constructor(
    private readonly sources: TlsSources,
    private readonly source: string,
  ) {
    for (const part of ['ca', 'cert', 'key'] as const) {
      const path = sources[`${part}File`];
      if (path) this.files[part] = this.read(path);
    }
    this.material = this.build();
    this.checkedAt = Date.now();
  }

  /**
   * The material to use now: the same object until a file's bytes change.
   * A file that cannot be read at a later check (being replaced) keeps its
   * last bytes until the next check.
   */
  current(now = Date.now()): TlsMaterial {
    if (now - this.checkedAt < TLS_FILE_CHECK_MS) return this.material;
    this.checkedAt = now;
    let changed = false;
    for (const w of Object.values(this.files)) {
      let stamp: string;
      let bytes: Buffer;
      try {
        stamp = stampOf(w.path);
        if (stamp === w.stamp) continue;
        bytes = readFileSync(w.path);
      } catch {
        continue;
      }
      w.stamp = stamp;
      if (bytes.equals(w.bytes)) continue;
      w.bytes = bytes;
      changed = true;
    }
    if (changed) this.material = this.build();
    return this.material;
  }

  private read(path: string): Watched {
    try {
      return { path, stamp: stampOf(path), bytes: readFileSync(path) };
    } catch (e) {
      throw new Error(
        `${this.source}: cannot read ${path}: ${errText(e)}; check the certificate-authority, client-certificate and client-key paths of the kubeconfig (in a pod: the mounted service account)`,
      );
    }
  }

  private build(): TlsMaterial {
    const s = this.sources;
    const part = (w: Watched | undefined, data: string | undefined) => w?.bytes ?? (data ? Buffer.from(data, 'base64') : undefined);
    const m: { -readonly [K in keyof TlsMaterial]: TlsMaterial[K] } = {};
    const ca = part(this.files.ca, s.caData);
    const cert = part(this.files.cert, s.certData);
    const key = part(this.files.key, s.keyData);
    if (ca) m.ca = ca;
    if (cert) m.cert = cert;
    if (key) m.key = key;
    if (s.servername) m.servername = s.servername;
    if (s.rejectUnauthorized === false) m.rejectUnauthorized = false;
    if (s.proxy) m.proxy = s.proxy;
    return Object.freeze(m);
  }
}

function stampOf(path: string): string {
  const st = statSync(path);
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}
