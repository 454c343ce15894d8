import { createServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { DecodeError, previewOf } from '../format.ts';
import { hostForUrl, listen } from './http-source.ts';
import { payloadDecoder } from './payload.ts';
import { type Ingest, PushSource, type PushSourceOptions, type RunningEndpoint, tokenDigest, tokenMatches } from './push-source.ts';

/** Options of {@link WebSocketSource}. */
export interface WebSocketSourceOptions<T> extends PushSourceOptions<T> {
  /** Port to listen on; 0 picks a free one (see `listening()` and the job's log). */
  readonly port: number;
  /** Path clients connect to (default `/ingest`). `GET /health` answers on the same port. */
  readonly path?: string;
  /**
   * Larger messages are refused (answered with an error, dead-lettered; the connection stays).
   * Messages over four times this close the connection (1009) unread. Default 8 MiB.
   */
  readonly maxMessageBytes?: number;
  /** How a message is read: `auto` (default: one JSON value, or NDJSON lines), `json` or `ndjson`. */
  readonly format?: 'auto' | 'json' | 'ndjson';
}

/** The answer to one message. */
export interface WebSocketAck {
  /** The message's number on its connection (1, 2, …). */
  readonly ack: number;
  /** The batch envelope's id, when the message had one. */
  readonly id?: string | number;
  readonly accepted?: number;
  readonly rejected?: number;
  readonly errors?: ReadonlyArray<{ readonly line?: number; readonly index?: number; readonly reason: string; readonly error: string }>;
  /** Nothing of the message was stored: send it again after `retryAfter` seconds. */
  readonly retry?: true;
  readonly retryAfter?: number;
  readonly error?: string;
}

/**
 * Takes records over WebSocket: each message is one JSON record, a JSON array of records, NDJSON
 * lines, or a batch envelope `{"id": "m-17", "records": [ … ]}` (an object with exactly these
 * keys; `id` optional). Every message is answered, in order, once its records are durable in the
 * source's write-ahead log:
 *
 *   {"ack": 17, "id": "m-17", "accepted": 500, "rejected": 0}
 *
 * with `errors` (line or index, reason, message) for refused parts — which are also dead letters
 * of the source step. Under backpressure (the backlog at `maxBacklog`) a message is answered
 * `{"ack": n, "retry": true, "retryAfter": 1, "error": …}` with nothing stored, and the server
 * stops reading the connection until the job has caught up. Clients authenticate on the upgrade
 * (`Authorization: Bearer <token>`, or `?token=` for browsers, which cannot set headers); a
 * refused upgrade is answered 401.
 *
 * @example
 * const p = new Pipeline();
 * p.source(new WebSocketSource<{ device: string }>({ port: 8081 }), { id: 'ws' }).sink(new ConsoleSink());
 * // const ws = new WebSocket('ws://127.0.0.1:8081/ingest');
 * // ws.send(JSON.stringify({ id: 1, records: [{ device: 'a' }] })); // → {"ack":1,"id":1,"accepted":1,"rejected":0}
 */
export class WebSocketSource<T = unknown> extends PushSource<T> {
  private readonly options: WebSocketSourceOptions<T>;
  private readonly path: string;
  private readonly maxMessageBytes: number;

  constructor(options: WebSocketSourceOptions<T>) {
    super(options, 'websocket', 'json');
    this.options = options;
    if (!(Number.isInteger(options.port) && options.port >= 0 && options.port < 65536)) throw new RangeError(`websocket: port must be an integer in [0, 65535], got ${String(options.port)}`);
    this.path = options.path ?? '/ingest';
    if (!this.path.startsWith('/')) throw new Error(`websocket: path must start with '/', got '${this.path}'`);
    this.maxMessageBytes = options.maxMessageBytes ?? 8 << 20;
    if (!(this.maxMessageBytes > 0)) throw new RangeError(`websocket: maxMessageBytes must be > 0, got ${String(options.maxMessageBytes)}`);
  }

  protected async start(ingest: Ingest, log: (line: string) => void): Promise<RunningEndpoint> {
    const token = this.options.token === undefined ? null : tokenDigest(this.options.token);
    const decode = payloadDecoder<T>({ schema: this.options.schema, maxBytes: this.maxMessageBytes, envelope: true });
    const format = this.options.format ?? 'auto';
    const wss = new WebSocketServer({ noServer: true, maxPayload: this.maxMessageBytes * 4 });
    const server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/health') {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ status: ingest.closing ? 'stopping' : ingest.full ? 'backpressure' : 'ok', backlog: ingest.backlog, maxBacklog: ingest.maxBacklog, connections: ingest.metrics.connections }));
        return;
      }
      res.statusCode = 426;
      res.setHeader('Upgrade', 'websocket');
      res.end(`connect with WebSocket to ${this.path}\n`);
    });
    const authorized = (req: IncomingMessage, url: URL): boolean => {
      if (token === null) return true;
      const header = /^Bearer\s+(.+)$/i.exec((req.headers.authorization ?? '').trim())?.[1] ?? url.searchParams.get('token');
      return header !== null && header !== undefined && tokenMatches(header, token);
    };
    const clients = new Set<Connection<T>>();
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== this.path) return refuse(socket, 404, 'Not Found');
      if (ingest.closing) return refuse(socket, 503, 'Service Unavailable');
      if (!authorized(req, url)) {
        ingest.count('unauthorized');
        return refuse(socket, 401, 'Unauthorized', 'WWW-Authenticate: Bearer\r\n');
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const c = new Connection<T>(ws, ingest, decode, format, this.maxMessageBytes, req.socket.remoteAddress ?? '', log);
        clients.add(c);
        ingest.metrics.connections++;
        ws.once('close', () => {
          clients.delete(c);
          ingest.metrics.connections--;
        });
      });
    });
    const address = await listen(server, this.options.port, this.host);
    return {
      address: { ...address, url: `ws://${hostForUrl(address.host)}:${address.port}${this.path}` },
      stop: async () => {
        server.close();
        // Messages under way are answered, then every connection closes (going away).
        await Promise.race([Promise.all([...clients].map((c) => c.idle())), new Promise((r) => setTimeout(r, 5000))]);
        for (const c of clients) c.ws.close(1001, 'the source is stopping');
        await new Promise<void>((r) => wss.close(() => r()));
        for (const c of clients) c.ws.terminate();
        server.closeAllConnections();
      },
    };
  }
}

/** One client connection: messages answered in order. */
class Connection<T> {
  private seq = 0;
  /** The answer to the last message, sent once the ones before it are. */
  private last: Promise<void> = Promise.resolve();

  constructor(
    readonly ws: WebSocket,
    private readonly ingest: Ingest,
    private readonly decode: ReturnType<typeof payloadDecoder<T>>,
    private readonly format: 'auto' | 'json' | 'ndjson',
    private readonly maxBytes: number,
    private readonly remote: string,
    private readonly log: (line: string) => void,
  ) {
    ws.on('message', (data, isBinary) => this.message(data, isBinary));
    ws.on('error', (error) => log(`websocket: connection from ${remote}: ${error.message}`));
  }

  /** Resolves when every message received so far is answered. */
  idle(): Promise<void> {
    return this.last;
  }

  private message(data: RawData, _isBinary: boolean): void {
    const seq = ++this.seq;
    const m = this.ingest.metrics;
    m.requests++;
    const payload = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    m.bytes += payload.length;
    if (this.ingest.closing || this.ingest.full) {
      m.backpressured++;
      const error = this.ingest.closing ? 'the source is stopping: send again later' : `backpressure: ${this.ingest.backlog} records wait to be read (limit ${this.ingest.maxBacklog}); send again later`;
      this.reply(Promise.resolve({ ack: seq, retry: true, retryAfter: this.ingest.retryAfter, error }));
      if (!this.ingest.closing && !this.ws.isPaused) {
        this.ws.pause();
        void this.ingest.drained().then(() => this.ws.resume());
      }
      return;
    }
    const receivedAt = Date.now();
    const origin = { remote: this.remote, message: seq };
    if (payload.length > this.maxBytes) {
      const message = `message of ${payload.length} bytes is larger than the limit (${this.maxBytes} bytes)`;
      const done = this.ingest.reject(new DecodeError(message, payload.length, previewOf(payload), undefined, 'too-large'), 'too-large', receivedAt, '', origin);
      this.reply(done.then(() => ({ ack: seq, accepted: 0, rejected: 1, errors: [{ reason: 'too-large', error: message }] })));
      return;
    }
    const decoded = this.decode(payload, this.format);
    const id = decoded.id === undefined ? {} : { id: decoded.id };
    if (decoded.parts.length === 0) {
      this.ingest.count('empty');
      this.reply(Promise.resolve({ ack: seq, ...id, accepted: 0, rejected: 0, errors: [{ reason: 'empty', error: 'no records in the message' }] }));
      return;
    }
    const appended = this.ingest.append(decoded.parts, receivedAt, '', origin);
    this.reply(
      appended.then(
        (r) => ({ ack: seq, ...id, accepted: r.accepted, rejected: r.rejected, ...(r.rejected > 0 ? { errors: r.errors.slice(0, 100) } : {}) }),
        (error: unknown) => {
          this.log(`websocket: could not append to the write-ahead log: ${(error as Error).message}`);
          return { ack: seq, ...id, retry: true as const, retryAfter: this.ingest.retryAfter, error: 'could not store the records; nothing was accepted: send again later' };
        },
      ),
    );
  }

  /** Sends an answer after the answers to the messages before it. */
  private reply(answer: Promise<WebSocketAck>): void {
    this.last = Promise.all([this.last, answer]).then(([, a]) => {
      if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(a));
    });
  }
}

function refuse(socket: Duplex, status: number, text: string, headers = ''): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\n${headers}Connection: close\r\nContent-Length: 0\r\n\r\n`);
}
