import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { crc32 } from 'node:zlib';
import { DecodeError, previewOf } from '../format.ts';
import type { WriteAheadLog } from '../wal/write-ahead-log.ts';
import { decodeEntry, EntryKind } from './entry.ts';
import type { PushMetrics, RejectReason } from './metrics.ts';
import { type PayloadFormat, payloadDecoder } from './payload.ts';
import { type AppendResult, type EndpointAddress, type Ingest, PushSource, type PushSourceOptions, type RunningEndpoint, tokenDigest, tokenMatches } from './push-source.ts';

/** Options of {@link HttpSource}. */
export interface HttpSourceOptions<T> extends PushSourceOptions<T> {
  /** Port to listen on; 0 picks a free one (see `listening()` and the job's log). */
  readonly port: number;
  /** Path that takes `POST`s of records (default `/ingest`). `GET /health` answers beside it. */
  readonly path?: string;
  /** Larger request bodies are refused with 413 (default 8 MiB). */
  readonly maxRequestBytes?: number;
  /**
   * Request bodies held in memory at once (being received, decoded or appended), in bytes: a
   * request that would go past it is answered 429 with `Retry-After` before its body is read
   * (default 64 MiB). A body without a Content-Length counts as `maxRequestBytes`.
   */
  readonly maxPendingBytes?: number;
  /**
   * How a body is read when its `Content-Type` says neither JSON (`application/json`, `…+json`)
   * nor NDJSON (`application/x-ndjson`, `application/ndjson`, `application/jsonl`,
   * `application/jsonlines`): `auto` (default) reads one JSON value, or NDJSON when the body has
   * several lines — so `curl -d` works without a header.
   */
  readonly format?: 'auto' | 'json' | 'ndjson';
}

const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/x-jsonlines', 'application/jsonlines']);

/**
 * Takes records over HTTP: `POST` a JSON record, a JSON array of records, or an NDJSON batch (one
 * record per line) to `http://<host>:<port><path>`. A request is answered only once its records
 * are durable in the source's write-ahead log, which the job reads and its checkpoints replay and
 * truncate: a 2xx answer means the records will be processed, exactly once, even if the process
 * is killed right after.
 *
 * Answers (JSON bodies):
 * - `200 {"accepted": n, "rejected": 0}`: every record accepted;
 * - `207 {"accepted": n, "rejected": m, "errors": [{"line"|"index", "reason", "error"}]}`: some
 *   records accepted, the ones listed refused (NDJSON lines and JSON array elements stand alone,
 *   as in Kafka's REST proxy: good records are never held back by a bad neighbour, and a client
 *   need not — must not — resend them);
 * - `400` (malformed JSON, invalid UTF-8, no record) or `422` (the schema refused every record),
 *   with the same `errors`; `413` body too large; `415` unsupported content encoding;
 * - `401` without the right bearer token (when one is set);
 * - `429` with `Retry-After` when the backlog (records appended, not yet read by the job) is at
 *   `maxBacklog`, or `maxPendingBytes` of bodies are being received; `503` with `Retry-After`
 *   while the source stops: nothing was written, send again.
 *
 * Every refused record or body (not a request without the token: that writes nothing) is also a
 * dead letter of the source step — `{ endpoint, reason, remote, line | index, size, payload }`
 * with the error — written to the log with the records, so it is counted once, survives a crash,
 * and reaches `pipeline.deadLetters()`. `GET /health` answers `{"status": "ok" | "backpressure",
 * …counters}`. Counters are on `source.metrics`.
 *
 * **Retries without duplicates.** A response lost after the append (a crash, a dropped
 * connection) leaves the client unsure. Send each request with an `Idempotency-Key` header (any
 * unique string up to 256 characters) and send it again under the same key: a request whose key
 * the source has stored is answered as the first time, with `Idempotent-Replayed: true`, and
 * stored nothing again (the same key with another body: 422). Keys are kept with the records in
 * the log, so they are known after a restart; the last 100 000 are remembered.
 *
 * @example
 * const p = new Pipeline({ checkpointDir: '.spate/checkpoints' });
 * p.source(new HttpSource<{ device: string; temp: number }>({ port: 8080 }), { id: 'readings' })
 *   .sink(new ConsoleSink());
 * // curl -H 'Content-Type: application/x-ndjson' --data-binary @readings.ndjson http://127.0.0.1:8080/ingest
 */
export class HttpSource<T = unknown> extends PushSource<T> {
  private readonly options: HttpSourceOptions<T>;
  private readonly path: string;
  private readonly maxRequestBytes: number;

  constructor(options: HttpSourceOptions<T>) {
    super(options, 'http', 'json');
    this.options = options;
    if (!(Number.isInteger(options.port) && options.port >= 0 && options.port < 65536)) throw new RangeError(`http: port must be an integer in [0, 65535], got ${String(options.port)}`);
    this.path = options.path ?? '/ingest';
    if (!this.path.startsWith('/')) throw new Error(`http: path must start with '/', got '${this.path}'`);
    this.maxRequestBytes = options.maxRequestBytes ?? 8 << 20;
    if (!(this.maxRequestBytes > 0)) throw new RangeError(`http: maxRequestBytes must be > 0, got ${String(options.maxRequestBytes)}`);
  }

  protected async start(ingest: Ingest, log: (line: string) => void): Promise<RunningEndpoint> {
    const handler = new HttpHandler(ingest, this.options, this.path, this.maxRequestBytes, log);
    await handler.keys.load(ingest.wal);
    const server = createServer({ keepAlive: true, requestTimeout: 60_000, headersTimeout: 30_000 }, (req, res) => handler.handle(req, res));
    server.keepAliveTimeout = 10_000;
    server.on('connection', (socket) => {
      ingest.metrics.connections++;
      socket.once('close', () => ingest.metrics.connections--);
    });
    const address = await listen(server, this.options.port, this.host);
    return {
      address: { ...address, url: `http://${hostForUrl(address.host)}:${address.port}${this.path}` },
      stop: () => handler.stop(server),
    };
  }
}

/** Handles the requests of one running endpoint. */
class HttpHandler<T> {
  private readonly decode: ReturnType<typeof payloadDecoder<T>>;
  private readonly token: Buffer | null;
  private active = 0;
  private idle: (() => void) | null = null;
  /** Bytes reserved by the bodies being handled. */
  private pendingBytes = 0;
  /** Idempotency keys of the requests stored lately. */
  readonly keys = new IdempotencyKeys();
  private readonly maxPendingBytes: number;

  constructor(
    private readonly ingest: Ingest,
    private readonly options: HttpSourceOptions<T>,
    private readonly path: string,
    private readonly maxRequestBytes: number,
    private readonly log: (line: string) => void,
  ) {
    this.decode = payloadDecoder<T>({ schema: options.schema, maxBytes: maxRequestBytes });
    this.token = options.token === undefined ? null : tokenDigest(options.token);
    this.maxPendingBytes = options.maxPendingBytes ?? 64 << 20;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.active++;
    res.once('close', () => {
      if (--this.active === 0 && this.idle !== null) this.idle();
    });
    this.route(req, res).catch((error: unknown) => {
      this.log(`http: request failed: ${(error as Error).message}`);
      if (!res.headersSent) send(res, 500, { error: 'internal error' }, true);
      else res.destroy();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      const m = this.ingest.metrics;
      send(res, 200, {
        status: this.ingest.closing ? 'stopping' : this.ingest.full ? 'backpressure' : 'ok',
        backlog: this.ingest.backlog,
        maxBacklog: this.ingest.maxBacklog,
        requests: m.requests,
        accepted: m.accepted,
        rejected: m.rejected,
        backpressured: m.backpressured,
      });
      return;
    }
    if (url.pathname !== this.path) {
      send(res, 404, { error: `no such endpoint: records are POSTed to ${this.path}` }, !drain(req));
      return;
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      send(res, 405, { error: `records are sent with POST, not ${req.method ?? '?'}` }, !drain(req));
      return;
    }
    const m = this.ingest.metrics;
    m.requests++;
    if (this.token !== null && !this.authorized(req)) {
      this.ingest.count('unauthorized');
      res.setHeader('WWW-Authenticate', 'Bearer');
      send(res, 401, { error: 'missing or wrong bearer token (Authorization: Bearer <token>)' }, true);
      req.resume();
      return;
    }
    if (this.ingest.closing) {
      m.backpressured++;
      res.setHeader('Retry-After', String(Math.ceil(this.ingest.retryAfter)));
      send(res, 503, { error: 'the source is stopping: send again later' }, !drain(req));
      return;
    }
    if (this.ingest.full) {
      m.backpressured++;
      res.setHeader('Retry-After', String(Math.ceil(this.ingest.retryAfter)));
      send(res, 429, { error: `backpressure: ${this.ingest.backlog} records wait to be read (limit ${this.ingest.maxBacklog}); send again later`, retryAfter: this.ingest.retryAfter }, !drain(req));
      return;
    }
    const declared = Number(req.headers['content-length']);
    const reserve = Number.isFinite(declared) ? Math.min(declared, this.maxRequestBytes) : this.maxRequestBytes;
    if (this.pendingBytes > 0 && this.pendingBytes + reserve > this.maxPendingBytes) {
      m.backpressured++;
      res.setHeader('Retry-After', String(Math.ceil(this.ingest.retryAfter)));
      send(res, 429, { error: `backpressure: ${this.pendingBytes} bytes of requests are being received (limit ${this.maxPendingBytes}); send again later`, retryAfter: this.ingest.retryAfter }, true);
      req.resume();
      return;
    }
    this.pendingBytes += reserve;
    try {
      await this.accept(req, res, m);
    } finally {
      this.pendingBytes -= reserve;
    }
  }

  /** Reads, decodes and appends a request's records, and answers. */
  private async accept(req: IncomingMessage, res: ServerResponse, m: PushMetrics): Promise<void> {
    const receivedAt = Date.now();
    const origin = { remote: req.socket.remoteAddress ?? '' };
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity') {
      const body = await readBody(req, this.maxRequestBytes);
      await this.ingest.reject(new DecodeError(`unsupported Content-Encoding '${encoding}'`, body.size, previewOf(body.head), undefined, 'invalid'), 'unsupported', receivedAt, '', origin);
      send(res, 415, { accepted: 0, rejected: 1, errors: [{ reason: 'unsupported', error: `unsupported Content-Encoding '${encoding}' (send the body uncompressed)` }] }, body.tooLarge);
      return;
    }
    const body = await readBody(req, this.maxRequestBytes);
    m.bytes += body.size;
    if (body.tooLarge) {
      const message = `request body of ${body.declared ? '' : 'more than '}${body.size} bytes is larger than the limit (${this.maxRequestBytes} bytes)`;
      await this.ingest.reject(new DecodeError(message, body.size, previewOf(body.head), undefined, 'too-large'), 'too-large', receivedAt, '', origin);
      send(res, 413, { accepted: 0, rejected: 1, errors: [{ reason: 'too-large', error: message }] }, true);
      return;
    }
    // A request sent again under the same Idempotency-Key is answered as the first time, unwritten.
    const keyHeader = req.headers['idempotency-key'];
    const key = typeof keyHeader === 'string' && keyHeader.length > 0 ? keyHeader : null;
    let remembered: { resolve: (answer: Answer | null) => void } | null = null;
    let meta = '';
    if (key !== null) {
      if (key.length > 256 || key.includes('\u0000')) {
        send(res, 400, { error: 'Idempotency-Key: at most 256 characters, no NUL' });
        return;
      }
      const hash = crc32(body.head);
      for (;;) {
        const known = this.keys.get(key);
        if (known === undefined) break;
        if (known.hash !== hash) {
          send(res, 422, { error: `Idempotency-Key '${key}' was used before with another body` });
          return;
        }
        const answer = await known.answer;
        if (answer === null) continue; // that attempt stored nothing: this one goes on
        m.duplicates++;
        res.setHeader('Idempotent-Replayed', 'true');
        send(res, answer.status, answer.body);
        return;
      }
      let resolve: (answer: Answer | null) => void = () => undefined;
      const answer = new Promise<Answer | null>((r) => (resolve = r));
      this.keys.set(key, { hash, answer });
      const entry = this.keys.get(key)!;
      remembered = {
        resolve: (a) => {
          if (a === null && this.keys.get(key) === entry) this.keys.delete(key);
          resolve(a);
        },
      };
      meta = `${key}\u0000${hash}`;
    }
    try {
      const answer = await this.store(body.head, req, receivedAt, meta, origin);
      remembered?.resolve(answer.stored ? answer : null);
      if (answer.retryAfter) res.setHeader('Retry-After', String(Math.ceil(this.ingest.retryAfter)));
      send(res, answer.status, answer.body);
    } catch (error) {
      remembered?.resolve(null);
      throw error;
    }
  }

  /** Decodes and appends a body; the answer to give. */
  private async store(body: Buffer, req: IncomingMessage, receivedAt: number, meta: string, origin: Record<string, unknown>): Promise<Answer & { stored: boolean; retryAfter?: boolean }> {
    const decoded = this.decode(body, formatOf(req.headers['content-type'], this.options.format ?? 'auto'));
    if (decoded.parts.length === 0) {
      this.ingest.count('empty');
      return { stored: false, status: 400, body: { accepted: 0, rejected: 0, errors: [{ reason: 'empty', error: 'no records in the request' }] } };
    }
    let result: AppendResult;
    try {
      result = await this.ingest.append(decoded.parts, receivedAt, meta, origin);
    } catch (error) {
      this.log(`http: could not append to the write-ahead log: ${(error as Error).message}`);
      return { stored: false, retryAfter: true, status: 503, body: { error: 'could not store the records; nothing was accepted: send again later' } };
    }
    return { stored: true, ...answerOf(result) };
  }

  private authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization;
    if (header === undefined) return false;
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    return m !== null && tokenMatches(m[1]!, this.token!);
  }

  async stop(server: Server): Promise<void> {
    server.close();
    server.closeIdleConnections();
    if (this.active > 0) {
      // Requests under way finish (their appends complete and are answered), briefly.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        this.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    server.closeAllConnections();
  }
}

/** An answer to a request that was stored: status and JSON body. */
interface Answer {
  readonly status: number;
  readonly body: unknown;
}

function answerOf(result: AppendResult): Answer {
  const status = result.rejected === 0 ? 200 : result.accepted > 0 ? 207 : result.errors.every((e) => e.reason === 'invalid') ? 422 : 400;
  return { status, body: result.rejected === 0 ? { accepted: result.accepted, rejected: 0 } : { accepted: result.accepted, rejected: result.rejected, errors: cap(result.errors) } };
}

/**
 * The Idempotency-Key of the requests stored lately, with a hash of their body and their answer:
 * the last `limit` keys, rebuilt on start from the log's tail (a request's entries carry its key).
 */
class IdempotencyKeys {
  private readonly keys = new Map<string, { readonly hash: number; readonly answer: Promise<Answer | null> }>();

  constructor(private readonly limit = 100_000) {}

  get(key: string): { readonly hash: number; readonly answer: Promise<Answer | null> } | undefined {
    return this.keys.get(key);
  }

  set(key: string, entry: { readonly hash: number; readonly answer: Promise<Answer | null> }): void {
    this.keys.delete(key);
    this.keys.set(key, entry);
    if (this.keys.size > this.limit) this.keys.delete(this.keys.keys().next().value!);
  }

  delete(key: string): void {
    this.keys.delete(key);
  }

  /** Rebuilds the keys of the requests among the log's last `entries` entries. */
  async load(wal: WriteAheadLog, entries = this.limit): Promise<void> {
    const end = wal.durableSequence;
    const cursor = wal.cursor(Math.max(wal.firstSequence, end - entries));
    const found = new Map<string, { hash: number; accepted: number; errors: Array<AppendResult['errors'][number]> }>();
    try {
      while (cursor.position < end) {
        const got = cursor.take(Math.min(4096, end - cursor.position));
        if (got.length === 0) {
          await cursor.ready();
          continue;
        }
        for (const raw of got) {
          const entry = decodeEntry(raw);
          if (entry.meta === '') continue;
          const [key, hash] = entry.meta.split('\u0000') as [string, string];
          let r = found.get(key);
          if (r === undefined) found.set(key, (r = { hash: Number(hash), accepted: 0, errors: [] }));
          if (entry.kind === EntryKind.Record) {
            r.accepted++;
            continue;
          }
          const { error, record } = JSON.parse(entry.payload.toString('utf8')) as { error: string; record: { reason: RejectReason; line?: number; index?: number } };
          r.errors.push({ ...(record.index !== undefined ? { index: record.index } : record.line !== undefined ? { line: record.line } : {}), reason: record.reason, error });
        }
      }
    } finally {
      cursor.close();
    }
    for (const [key, r] of found) this.set(key, { hash: r.hash, answer: Promise.resolve(answerOf({ accepted: r.accepted, rejected: r.errors.length, errors: r.errors })) });
  }
}

/** At most 100 errors in an answer; the rest counted. */
function cap(errors: AppendResult['errors']): unknown[] {
  if (errors.length <= 100) return [...errors];
  return [...errors.slice(0, 100), { more: errors.length - 100 }];
}

function formatOf(contentType: string | undefined, fallback: 'auto' | 'json' | 'ndjson'): PayloadFormat {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (NDJSON_TYPES.has(type)) return 'ndjson';
  if (type === 'application/json' || type.endsWith('+json')) return 'json';
  return fallback;
}

interface Body {
  /** The whole body, or its first chunk when it is too large. */
  readonly head: Buffer;
  readonly size: number;
  readonly tooLarge: boolean;
  /** Whether `size` is the declared Content-Length (else: bytes received). */
  readonly declared: boolean;
}

/** Reads a body up to `max` bytes; past it, stops with what came first (for the dead letter's preview). */
function readBody(req: IncomingMessage, max: number): Promise<Body> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  return new Promise<Body>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (body: Body): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      // The rest of a refused body is read and dropped, so the client can read the answer.
      if (body.tooLarge) req.resume();
      resolve(body);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      chunks.push(chunk);
      if (declared > max) finish({ head: Buffer.concat(chunks), size: declared, tooLarge: true, declared: true });
      else if (size > max) finish({ head: Buffer.concat(chunks).subarray(0, 1000), size, tooLarge: true, declared: false });
    };
    const onEnd = (): void => {
      if (declared > max) finish({ head: Buffer.concat(chunks), size: declared, tooLarge: true, declared: true });
      else finish({ head: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), size, tooLarge: false, declared: false });
    };
    const onError = (error: Error): void => {
      if (done) return;
      done = true;
      reject(error);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** Discards a body not read; false when it is too large to bother (then the connection closes). */
function drain(req: IncomingMessage): boolean {
  const length = Number(req.headers['content-length'] ?? 0);
  req.resume();
  return length <= 1 << 20;
}

function send(res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  if (close) res.setHeader('Connection', 'close');
  res.end(text);
}

/** Listens on `port` at `host`; resolves with the address bound. */
export function listen(server: Server | NetServer, port: number, host: string): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

/** A host for a URL (IPv6 in brackets). */
export function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export type { EndpointAddress };
