/**
 * Connection options passed through to the NATS client: a token against a real server of this
 * test's own (nats-server on a free port, JetStream in a temporary directory, token required), a
 * wrong token failing at once with a clear error, and a credentials file read at open.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { CollectSink, GeneratorSource, Pipeline } from '../../index.ts';
import { clientOptions, isTransient } from './config.ts';
import { JetStreamSink } from './sink.ts';
import { JetStreamSource } from './source.ts';

const TOKEN = 's3cret-token';
let server: ChildProcess;
let url = '';
let dir = '';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spate-nats-auth-'));
  const port = await freePort();
  url = `nats://127.0.0.1:${port}`;
  server = spawn('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, '--auth', TOKEN], { stdio: 'ignore' });
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      const nc = await connect({ servers: url, token: TOKEN, reconnect: false });
      await nc.close();
      break;
    } catch (error) {
      if (Date.now() > end) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});

afterAll(() => {
  server?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

it('passes a token through: a pipeline reads and writes a server that requires one', async () => {
  const nc = await connect({ servers: url, token: TOKEN });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'AUTH', subjects: ['auth.>'] });
  await nc.close();
  const connection = { servers: url, token: TOKEN };
  const p = new Pipeline();
  p.source(new GeneratorSource({ count: 100, make: (i) => ({ i }) }), { id: 'numbers' }).sink(new JetStreamSink<{ i: number }>({ connection, subject: 'auth.out' }), { id: 'out' });
  await p.run();
  const out = new CollectSink<{ i: number }>();
  const q = new Pipeline();
  q.source(new JetStreamSource<{ i: number }>({ connection, stream: 'AUTH', bounded: true }), { id: 'in' }).sink(out);
  await q.run();
  expect(out.values.map((r) => r.i)).toEqual(Array.from({ length: 100 }, (_, i) => i));
});

it('fails at once, with the server’s reason, when the token is wrong (retrying cannot fix it)', async () => {
  const p = new Pipeline();
  p.source(new JetStreamSource<unknown>({ connection: { servers: url, token: 'wrong' }, stream: 'AUTH', bounded: true }), { id: 'in' }).sink(new CollectSink());
  const started = Date.now();
  await expect(p.run()).rejects.toThrow(/authoriz/i);
  expect(Date.now() - started).toBeLessThan(5_000);
});

it('reads a credentials file at open, and says clearly when it is missing', () => {
  const creds = join(dir, 'user.creds');
  writeFileSync(creds, '-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.x\n------END NATS USER JWT------\n');
  const opts = clientOptions({ servers: url, credsFile: creds, tls: { caFile: '/ca.pem' }, user: 'u', pass: 'p', client: { pingInterval: 1_000 } }, 'spate test');
  expect(typeof opts.authenticator).toBe('function');
  expect(opts).toMatchObject({ servers: url, tls: { caFile: '/ca.pem' }, user: 'u', pass: 'p', pingInterval: 1_000, name: 'spate test' });
  expect(() => clientOptions({ credsFile: join(dir, 'missing.creds') }, 'x')).toThrow(/cannot read the credentials file .*missing\.creds/);
});

it('classifies errors: an absent server is waited for, refused credentials are not', () => {
  expect(isTransient(Object.assign(new Error('connection refused'), { name: 'ConnectionError' }))).toBe(true);
  expect(isTransient(new Error('timeout'))).toBe(true);
  expect(isTransient(Object.assign(new Error("'Authorization Violation'"), { name: 'AuthorizationError' }))).toBe(false);
  expect(isTransient(new Error('stream not found'))).toBe(false);
});
