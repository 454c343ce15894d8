/**
 * Helpers for tests against the real NATS server (`scripts/services.sh up nats`): the URL from
 * `SPATE_NATS_URL`, streams with unique names (deleted after the test file), fast publishing and
 * reading back what a stream holds.
 */
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';

export const NATS_URL = process.env['SPATE_NATS_URL'] ?? 'nats://127.0.0.1:4222';

let shared: Promise<NatsConnection> | null = null;

/** One connection per test file (closed by `closeNats`). */
export function nats(): Promise<NatsConnection> {
  shared ??= connect({ servers: NATS_URL, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  return shared;
}

export async function manager(): Promise<JetStreamManager> {
  return jetstreamManager(await nats(), { timeout: 10_000 });
}

const created = new Set<string>();

/** A stream with a unique name (`SPATE_<tag>_<pid>_<random>`) capturing `<name>.>`; deleted by `cleanupStreams`. */
export async function testStream(tag: string, config: Partial<StreamConfig> = {}): Promise<{ name: string; subject: (s: string) => string }> {
  const name = `SPATE_${tag}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`.toUpperCase();
  const jsm = await manager();
  await jsm.streams.add({ name, subjects: [`${name}.>`], ...config });
  created.add(name);
  return { name, subject: (s) => `${name}.${s}` };
}

/** Deletes the streams this file created and closes the connection. */
export async function cleanupStreams(): Promise<void> {
  const jsm = await manager();
  for (const name of created) await jsm.streams.delete(name).catch(() => undefined);
  created.clear();
  const nc = await shared;
  shared = null;
  await nc?.close();
}

/** Publishes payloads to subjects (in order), `window` at a time, awaiting every acknowledgement. */
export async function publish(messages: ReadonlyArray<{ subject: string; data: string | Uint8Array; id?: string }>, window = 512): Promise<void> {
  const js = jetstream(await nats());
  for (let i = 0; i < messages.length; i += window) {
    await Promise.all(
      messages.slice(i, i + window).map((m) => {
        if (m.id === undefined) return js.publish(m.subject, m.data);
        const h = natsHeaders();
        h.set('Nats-Msg-Id', m.id);
        return js.publish(m.subject, m.data, { headers: h });
      }),
    );
  }
}

/** Every message the stream holds, in order: subject, sequence, payload as text, message id. */
export async function readAll(stream: string): Promise<Array<{ subject: string; seq: number; data: string; id: string | undefined }>> {
  const jsm = await manager();
  const info = await jsm.streams.info(stream);
  const out: Array<{ subject: string; seq: number; data: string; id: string | undefined }> = [];
  if (info.state.messages === 0) return out;
  const js = jetstream(await nats());
  const consumer = await js.consumers.get(stream);
  const messages = await consumer.fetch({ max_messages: info.state.messages, expires: 5_000 });
  for await (const m of messages) {
    out.push({ subject: m.subject, seq: m.seq, data: m.string(), id: m.headers?.get('Nats-Msg-Id') || undefined });
    if (m.info.pending === 0) break;
  }
  return out;
}
