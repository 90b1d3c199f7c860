import { request } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explainKubeError, explainNoAnswer } from './explain.js';

// Errors without an HTTP status name the API server's address and where the
// credentials come from, whatever Node's code for them: a DNS hiccup
// (EAI_AGAIN) or something at the address that does not speak HTTP (HPE_*).

const to = { server: 'https://kube.example:6443', source: 'kubeconfig /etc/kube/config (context prod)' };
const REACH = /^cannot reach the Kubernetes API server at https:\/\/kube\.example:6443 \(credentials: kubeconfig \/etc\/kube\/config \(context prod\)\): /;

let notHttp: Server;

beforeAll(async () => {
  notHttp = createServer((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n'));
  await new Promise<void>((r) => notHttp.listen(0, '127.0.0.1', r));
});

afterAll(() => void notHttp.close());

/** What Node's HTTP client fails with against a server that answers something other than HTTP. */
function parseError(): Promise<Error & { code?: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: (notHttp.address() as AddressInfo).port, path: '/version' });
    req.on('error', resolve);
    req.end();
  });
}

describe('explainKubeError', () => {
  it('names the address and credentials for a DNS lookup that failed for now (EAI_AGAIN)', () => {
    // As Node's getaddrinfo fails when the resolver does not answer.
    const e = Object.assign(new Error('getaddrinfo EAI_AGAIN kube.example'), { code: 'EAI_AGAIN', syscall: 'getaddrinfo', hostname: 'kube.example' });
    const text = explainKubeError(e, to, 'grant it');
    expect(text).toMatch(REACH);
    expect(text).toMatch(/getaddrinfo EAI_AGAIN kube\.example; check that the API server is up and reachable from the agent's pod/);
  });

  it('names the address and credentials for an answer that is not HTTP (HPE_*)', async () => {
    const e = await parseError();
    expect(e.code).toMatch(/^HPE_/);
    expect(explainKubeError(e, to, 'grant it')).toMatch(REACH);
  });

  it('leaves an error of neither kind as it is', () => {
    expect(explainKubeError(new Error('something else'), to, 'grant it')).toBe('something else');
  });
});

describe('explainNoAnswer', () => {
  it('says the API server cannot be reached for any error without a certificate problem, code or not', async () => {
    expect(explainNoAnswer(await parseError(), to)).toMatch(REACH);
    expect(explainNoAnswer(new Error('socket hang up'), to, 'this machine')).toMatch(
      /: socket hang up; check that the API server is up and reachable from this machine/,
    );
  });

  it('names the CA for a certificate the agent cannot verify', () => {
    const e = Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    expect(explainNoAnswer(e, to)).toMatch(/^cannot verify the certificate of the Kubernetes API server at https:\/\/kube\.example:6443/);
  });
});
