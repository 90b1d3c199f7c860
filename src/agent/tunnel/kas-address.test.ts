import { describe, expect, it } from 'vitest';
import { parseKasAddress } from './kas-address.js';

describe('parseKasAddress', () => {
  it('parses grpc and grpcs', () => {
    expect(parseKasAddress('grpc://127.0.0.1:8150')).toMatchObject({ scheme: 'grpc', target: '127.0.0.1:8150', host: '127.0.0.1' });
    expect(parseKasAddress('grpcs://kas.example.com')).toMatchObject({ scheme: 'grpcs', target: 'kas.example.com:443' });
  });
  it('parses ws and wss with the WebSocket URL', () => {
    expect(parseKasAddress('ws://127.0.0.1:8080/-/kubernetes-agent/')).toMatchObject({
      scheme: 'ws',
      target: '127.0.0.1:8080',
      url: 'ws://127.0.0.1:8080/-/kubernetes-agent/',
    });
    expect(parseKasAddress('wss://kas.example.com/-/kubernetes-agent/')).toMatchObject({
      scheme: 'wss',
      target: 'kas.example.com:443',
      host: 'kas.example.com',
    });
    expect(parseKasAddress('ws://[::1]:8080/-/kubernetes-agent/')).toMatchObject({ target: '[::1]:8080', host: '::1' });
  });
  it('refuses an unknown scheme at start-up', () => {
    expect(() => parseKasAddress('http://kas:80')).toThrow(/scheme "http" is not supported; use grpc:\/\/, grpcs:\/\/, ws:\/\/ or wss:\/\//);
  });
  it('asks for the trailing slash on WebSocket addresses', () => {
    expect(() => parseKasAddress('wss://kas.example.com/-/kubernetes-agent')).toThrow(
      /must end with a slash \(e\.g\. wss:\/\/kas\.example\.com\/-\/kubernetes-agent\/\)/,
    );
    expect(() => parseKasAddress('ws://kas.example.com')).not.toThrow(); // the root path is "/"
  });
  it('refuses what is not a URL', () => {
    expect(() => parseKasAddress('kas:8150')).toThrow(/scheme "kas" is not supported/);
    expect(() => parseKasAddress('not a url')).toThrow(/is not a URL/);
  });
});
