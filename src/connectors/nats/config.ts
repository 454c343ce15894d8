/**
 * How the NATS connectors reach the server: connection options (credentials file, token, user and
 * password, TLS) passed through to `@nats-io/transport-node`, and a connect that waits for the
 * server with backoff, saying so on the job's log, instead of failing the job.
 */
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { DEFAULT_NATS_URL, type NatsConnectionOptions, type RetryOptions } from './options.ts';

export { DEFAULT_NATS_URL, type NatsConnectionOptions, type RetryOptions };

/** The client options for `options` (credentials read here, so a missing file fails clearly). */
export function clientOptions(options: NatsConnectionOptions, name: string): ConnectionOptions {
  const servers = options.servers ?? DEFAULT_NATS_URL;
  const out: ConnectionOptions = {
    servers: typeof servers === 'string' ? servers : [...servers],
    name: options.name ?? name,
    // Reconnect for ever: an outage is waited out (with the client's own backoff), never fatal.
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: 5_000,
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(options.user === undefined ? {} : { user: options.user }),
    ...(options.pass === undefined ? {} : { pass: options.pass }),
    ...(options.tls === undefined ? {} : { tls: { ...options.tls } }),
    ...(options.client as Partial<ConnectionOptions> | undefined),
  };
  if (options.credsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(options.credsFile);
    } catch (error) {
      throw new Error(`NATS: cannot read the credentials file ${options.credsFile}: ${(error as Error).message}`);
    }
    out.authenticator = credsAuthenticator(creds);
  }
  return out;
}

/** Errors that waiting can fix: the server is not there (yet), or JetStream is not ready. */
export function isTransient(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown; name?: unknown; cause?: unknown } | null;
  const text = `${String(e?.name ?? '')} ${String(e?.code ?? '')} ${String(e?.message ?? '')}`;
  if (/authoriz|authentic|permission|credentials/i.test(text)) return false;
  if (/refused|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|timeout|TIMEOUT|CONNECTION_|disconnect|closed|draining|no responders|503|unavailable|not ready|leadership|jetstream not enabled/i.test(text)) return true;
  return e?.cause !== undefined && e.cause !== error ? isTransient(e.cause) : false;
}

/** A short description of a client error for a log line. */
export function describe(error: unknown): string {
  const e = error as { message?: unknown; code?: unknown } | null;
  const message = String(e?.message ?? error);
  return e?.code !== undefined && !message.includes(String(e.code)) ? `${message} (${String(e.code)})` : message;
}

/**
 * Runs `fn` until it succeeds, waiting with backoff while the server is unreachable; logs once when
 * an outage starts and once when it ends. An error that waiting cannot fix is thrown at once;
 * `stopped()` ends the waiting (the step is closing).
 */
export async function retrying<R>(
  what: string,
  fn: () => Promise<R>,
  log: (line: string) => void,
  retry: RetryOptions = {},
  stopped: () => boolean = () => false,
  onOutage?: (down: boolean) => void,
): Promise<R> {
  const first = retry.first ?? 100;
  const max = retry.max ?? 5_000;
  let delay = first;
  let failures = 0;
  let since = 0;
  for (;;) {
    try {
      const result = await fn();
      if (failures > 0) {
        log(`${what}: NATS answers again, after ${failures} failed attempt(s) over ${((Date.now() - since) / 1000).toFixed(1)} s`);
        onOutage?.(false);
      }
      return result;
    } catch (error) {
      if (stopped() || !isTransient(error)) throw error;
      if (failures === 0) {
        since = Date.now();
        log(`${what}: NATS is unavailable (${describe(error)}); retrying with backoff up to ${max / 1000} s apart`);
        onOutage?.(true);
      }
      failures++;
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (stopped()) throw error;
      delay = Math.min(max, delay * 2);
    }
  }
}

/** Connects, waiting for the server with backoff (see {@link retrying}). */
export function connectNats(
  options: NatsConnectionOptions,
  name: string,
  log: (line: string) => void,
  retry?: RetryOptions,
  stopped?: () => boolean,
  onOutage?: (down: boolean) => void,
): Promise<NatsConnection> {
  const opts = clientOptions(options, name);
  return retrying('connecting', () => connect(opts), log, retry, stopped, onOutage);
}

/** Nanoseconds (JetStream's durations) from milliseconds. */
export const nanos = (ms: number): number => Math.round(ms * 1e6);
