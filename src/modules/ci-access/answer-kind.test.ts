import { describe, expect, it } from 'vitest';
import { answerKind } from './answer-kind.js';

// The spellings the API server accepts for a watch or a follow (a boolean
// query parameter is true unless its first value is "0" or "false"), the
// legacy watch paths, and /proxy/ subresources.
describe('answerKind', () => {
  it.each([
    ['/api/v1/namespaces/a/configmaps?watch=true', { watch: true, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?watch=1&resourceVersion=5', { watch: true, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?watch=True', { watch: true, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?watch', { watch: true, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?watch=', { watch: true, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?watch=yes', { watch: true, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?watch=0', { watch: false, stream: false, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?watch=FALSE', { watch: false, stream: false, proxied: false }],
    ['/api/v1/namespaces/a/configmaps?labelSelector=watch%3Dtrue', { watch: false, stream: false, proxied: false }],
    ['/api/v1/watch/namespaces/a/configmaps', { watch: true, stream: true, proxied: false }],
    ['/apis/apps/v1/watch/deployments', { watch: true, stream: true, proxied: false }],
    ['/api/v1/namespaces/watch/configmaps', { watch: false, stream: false, proxied: false }],
    ['/api/v1/namespaces/a/pods/p/log?follow', { watch: false, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/pods/p/log?follow=true&container=c', { watch: false, stream: true, proxied: false }],
    ['/api/v1/namespaces/a/pods/p/log?follow=false', { watch: false, stream: false, proxied: false }],
    ['/api/v1/namespaces/a/services/web:8080/proxy/events', { watch: false, stream: true, proxied: true }],
    ['/api/v1/namespaces/a/pods/p/proxy', { watch: false, stream: true, proxied: true }],
    ['/api/v1/nodes/n1/proxy/metrics', { watch: false, stream: true, proxied: true }],
    ['/api/v1/namespaces/a/configmaps/proxy', { watch: false, stream: false, proxied: false }],
  ])('%s', (uri, kind) => {
    expect(answerKind(uri)).toEqual(kind);
  });
});
