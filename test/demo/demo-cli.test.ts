/**
 * `spate demo` when it cannot start: an ingestion endpoint whose port is taken, or an external
 * MQTT broker that refuses, fails the command at once (exit 1, naming the step) rather than
 * leaving it waiting for an endpoint that will never listen. And `spate query --url` with the
 * address a demo with a token prints (`?token=…`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts, spate, spateQuery, startDemo } from '../support/demo.ts';

const root = mkdtempSync(join(tmpdir(), 'spate-demo-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('spate demo that cannot start', () => {
  it('exits 1 when the port of an endpoint is taken', async () => {
    const [port, http, ws, mqtt] = await freePorts(4);
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(http, '127.0.0.1', () => resolve()));
    try {
      const started = Date.now();
      const r = await spate(['demo', '--dir', join(root, 'taken'), '--port', String(port), '--http-port', String(http), '--ws-port', String(ws), '--mqtt-port', String(mqtt), '--devices', '10', '--rate', '10'], 30_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/step 'http' failed: listen EADDRINUSE/);
      expect(Date.now() - started).toBeLessThan(25_000);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('exits 1 when the external MQTT broker refuses', async () => {
    const [port, http, ws, mqtt, nobody] = await freePorts(5);
    const r = await spate(['demo', '--dir', join(root, 'refused'), '--port', String(port), '--http-port', String(http), '--ws-port', String(ws), '--mqtt-port', String(mqtt), '--mqtt-url', `mqtt://127.0.0.1:${nobody}`, '--devices', '10', '--rate', '10'], 30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/step 'mqtt' failed: .*ECONNREFUSED/);
  });

  it('refuses --mqtt-client-id without --mqtt-url', async () => {
    const r = await spate(['demo', '--dir', join(root, 'usage'), '--mqtt-client-id', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--mqtt-client-id needs --mqtt-url/);
  });
});

describe('spate demo --token', () => {
  it('prints an address with its token, which `spate query --url` takes as it is', async () => {
    const demo = await startDemo(join(root, 'token'), ['--devices', '0', '--token', 's3cret-token']);
    try {
      expect(demo.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=s3cret-token$/);
      expect(await spateQuery('SELECT count(*) AS n FROM device_stats', ['--url', demo.url])).toEqual([{ n: '0' }]);
      const bare = demo.url.replace(/\?.*$/, '');
      await expect(spateQuery('SELECT 1 AS n', ['--url', bare])).rejects.toThrow(/answered 401/);
      expect(await spateQuery('SELECT 1 AS n', ['--url', bare, '--token', 's3cret-token'])).toEqual([{ n: 1 }]);
      expect(await demo.stop()).toEqual({ code: 0, signal: null });
    } finally {
      await demo.kill();
    }
  });
});
