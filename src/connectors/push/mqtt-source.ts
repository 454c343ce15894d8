import { createServer, type Server } from 'node:net';
import { DecodeError, previewOf, type Schema } from '../format.ts';
import { hostForUrl, listen } from './http-source.ts';
import { type PayloadFormat, payloadDecoder } from './payload.ts';
import { type Ingest, PushSource, type PushSourceOptions, type RunningEndpoint, tokenDigest, tokenMatches } from './push-source.ts';
import { messageHash, messageMeta, Redeliveries, topicOf } from './redeliveries.ts';

/** Options of {@link MqttSource}: either `port` (an in-process broker) or `url` (an external one). */
export interface MqttSourceOptions<T, R = T> extends Omit<PushSourceOptions<R>, 'schema'> {
  /**
   * Topic filters to ingest (MQTT wildcards `+` and `#`; default `['#']`). With an external broker
   * they are the source's subscriptions (QoS 1); with the in-process broker, messages published
   * to other topics pass through the broker as usual and are not ingested.
   */
  readonly topics?: readonly string[];
  /**
   * Runs an MQTT broker in this process (aedes), listening on this port (0 picks a free one) at
   * `host`: devices publish to it, and a PUBLISH is acknowledged (PUBACK) only once the message is
   * durable in the source's write-ahead log. `token`, when set, is the password clients must give.
   */
  readonly port?: number;
  /**
   * Or subscribes to an external broker (`mqtt://host:1883`, `mqtts://…`) with a persistent
   * session (clean: false) under a stable client id, and acknowledges each message to the broker
   * only once it is durable in the write-ahead log: the broker keeps what the job has not taken.
   */
  readonly url?: string;
  /** Client id at the external broker (default `spate-<step id>`): keep it stable across runs. */
  readonly clientId?: string;
  /** Credentials at the external broker. */
  readonly username?: string;
  readonly password?: string;
  /**
   * How a message's payload is read (default `json`): `json` (one record, or an array of
   * records), `ndjson`, `auto`, `text` or `bytes`.
   */
  readonly format?: PayloadFormat;
  /** Validates each payload record (see {@link PushSourceOptions.schema}). */
  readonly schema?: Schema<T>;
  /** Larger messages are refused, as dead letters (default 1 MiB). */
  readonly maxMessageBytes?: number;
  /**
   * Builds the record from a payload record and its topic (default: the payload record), e.g.
   * `(reading, topic) => ({ ...reading, device: topic.split('/')[1] })`. Runs again on replay:
   * keep it deterministic.
   */
  readonly message?: (payload: T, topic: string) => R;
}

/**
 * Takes messages over MQTT (QoS 1; QoS 0 is taken as sent, QoS 2 as QoS 1), with one of:
 *
 * - an **in-process broker** (`port`): aedes listens in the job's main thread; a device's PUBLISH
 *   is answered with PUBACK only after the message is durable in the source's write-ahead log
 *   (aedes' `authorizePublish` hook, which runs before it writes the PUBACK, appends and waits for
 *   the fsync). Under backpressure the hook waits until the job has caught up, so the broker stops
 *   reading that client and its unacknowledged messages stay with it.
 * - an **external broker** (`url`, e.g. Mosquitto): a persistent session under a stable client
 *   id subscribes at QoS 1; each PUBACK goes to the broker once the message is durable, in order,
 *   while later messages are already being appended (one fsync serves many). A job that is down
 *   leaves its messages queued at the broker.
 *
 * Each payload is decoded with `format` and `schema`; a payload that does not decode is
 * acknowledged (resending it would not help) and becomes a dead letter of the source step with its
 * topic, size and start. A crash (or a dropped connection) between the append and the PUBACK
 * makes the sender or broker deliver the message again, with the DUP flag: the source recognises
 * it in its log ({@link Redeliveries}: same session, packet id and content, in the order the log
 * holds them) and acknowledges it without appending it twice — QoS 1 in, exactly once out.
 *
 * @example
 * const p = new Pipeline({ checkpointDir: '.spate/checkpoints' });
 * p.source(
 *   new MqttSource<{ temp: number }, { device: string; temp: number }>({
 *     port: 1883,
 *     topics: ['sensors/+/reading'],
 *     message: (r, topic) => ({ device: topic.split('/')[1]!, temp: r.temp }),
 *   }),
 *   { id: 'mqtt' },
 * ).sink(new ConsoleSink());
 * // mosquitto_pub -q 1 -t sensors/d1/reading -m '{"temp": 21.5}'
 */
export class MqttSource<T = unknown, R = T> extends PushSource<R> {
  private readonly options: MqttSourceOptions<T, R>;
  private readonly topics: readonly string[];
  private readonly maxMessageBytes: number;

  constructor(options: MqttSourceOptions<T, R>) {
    super(options as PushSourceOptions<R>, 'mqtt', options.format ?? 'json');
    this.options = options;
    if ((options.port === undefined) === (options.url === undefined)) throw new Error('mqtt: give either port (an in-process broker) or url (an external broker)');
    if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 0 && options.port < 65536)) {
      throw new RangeError(`mqtt: port must be an integer in [0, 65535], got ${String(options.port)}`);
    }
    if (options.url !== undefined && !/^(mqtts?|wss?|tcp|ssl):\/\//.test(options.url)) throw new Error(`mqtt: url must be mqtt://, mqtts://, ws:// or wss://, got '${options.url}'`);
    this.topics = options.topics ?? ['#'];
    if (this.topics.length === 0) throw new Error('mqtt: topics is empty');
    for (const t of this.topics) validFilter(t);
    this.maxMessageBytes = options.maxMessageBytes ?? 1 << 20;
  }

  protected override toRecord(value: unknown, meta: string): R {
    const message = this.options.message;
    return message === undefined ? (value as R) : message(value as T, topicOf(meta));
  }

  protected async start(ingest: Ingest, log: (line: string) => void, stepId: string): Promise<RunningEndpoint> {
    const handler = new MessageHandler<T>(ingest, payloadDecoder<T>({ schema: this.options.schema, maxBytes: this.maxMessageBytes }), this.options.format ?? 'json', this.maxMessageBytes);
    // What the log holds of each sender's last messages: redeliveries after a crash are recognised.
    await handler.redeliveries.load(ingest.wal);
    return this.options.url !== undefined ? this.subscribe(handler, log, this.options.clientId ?? `spate-${stepId}`) : this.broker(handler, log);
  }

  /** The in-process broker. */
  private async broker(handler: MessageHandler<T>, log: (line: string) => void): Promise<RunningEndpoint> {
    const { Aedes } = await import('aedes');
    const token = this.options.token === undefined ? null : tokenDigest(this.options.token);
    const ingest = handler.ingest;
    const filters = this.topics;
    const broker = await Aedes.createBroker({
      authenticate: (_client, _username, password, done) => {
        if (token === null || (password !== undefined && tokenMatches(password, token))) {
          done(null, true);
          return;
        }
        ingest.count('unauthorized');
        const error = Object.assign(new Error('bad user name or password'), { returnCode: 4 as const });
        done(error, null);
      },
      // Runs before aedes writes the PUBACK (or PUBREC): the message is durable when it calls back.
      authorizePublish: (client, packet, callback) => {
        if (client === null || packet.topic.startsWith('$') || !filters.some((f) => matches(f, packet.topic))) {
          callback(null);
          return;
        }
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        handler.receive(packet.topic, payload, { client: client.id }, packet.qos > 0 ? client.id : null, packet.messageId, packet.dup, client).then(
          () => callback(null),
          (error: unknown) => callback(error as Error), // aedes drops the connection, unacknowledged
        );
      },
    });
    const server: Server = createServer((socket) => {
      ingest.metrics.connections++;
      socket.once('close', () => ingest.metrics.connections--);
      broker.handle(socket);
    });
    const address = await listen(server, this.options.port!, this.host);
    // Clients' errors while the broker closes (their connections cut, the emitter closed) are the stop itself.
    let stopping = false;
    broker.on('clientError', (client, error) => {
      if (!stopping) log(`mqtt: client ${client.id}: ${error.message}`);
    });
    return {
      address: { ...address, url: `mqtt://${hostForUrl(address.host)}:${address.port}` },
      stop: async () => {
        stopping = true;
        server.close();
        await handler.idle();
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        await new Promise((r) => server.close(() => r(undefined)));
      },
    };
  }

  /** A persistent session at an external broker. */
  private async subscribe(handler: MessageHandler<T>, log: (line: string) => void, clientId: string): Promise<RunningEndpoint> {
    const mqtt = await import('mqtt');
    const ingest = handler.ingest;
    const url = this.options.url!;
    const client = mqtt.connect(url, {
      clientId,
      clean: false,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(this.options.username === undefined ? {} : { username: this.options.username }),
      ...(this.options.password === undefined ? {} : { password: this.options.password }),
    });
    let connection = 0;
    /** This connection (a new object each time): its first messages may be redeliveries. */
    let session: object = {};
    let away = false;
    client.on('connect', () => {
      connection++;
      session = {};
      if (away) log(`mqtt: connected to ${url} again`);
      away = false;
    });
    client.on('close', () => {
      connection++;
      if (!away && !client.disconnecting) log(`mqtt: lost the connection to ${url}; reconnecting`);
      away = true;
    });
    client.on('error', (error) => log(`mqtt: ${url}: ${error.message}`));
    // Each message is appended as it comes, and mqtt.js is let on to the next one at once; its
    // PUBACK is held back until the append is durable, then sent in order — so one fsync serves
    // every message of a burst. (mqtt.js sends a PUBACK when handleMessage calls back: the write of
    // that PUBACK is what is deferred.)
    const durable = new Map<number, Promise<void>>();
    let acks: Promise<void> = Promise.resolve();
    const internal = client as unknown as { _sendPacket: (packet: { cmd: string; messageId?: number }, cb?: (error?: Error) => void, ...rest: unknown[]) => void };
    const send = internal._sendPacket.bind(client);
    internal._sendPacket = (packet, cb, ...rest) => {
      const appended = packet.cmd === 'puback' && packet.messageId !== undefined ? durable.get(packet.messageId) : undefined;
      if (appended === undefined) {
        send(packet, cb, ...rest);
        return;
      }
      durable.delete(packet.messageId!);
      const on = connection;
      cb?.();
      acks = acks
        .then(() => appended)
        .then(
          () => {
            // After a reconnect the broker redelivers what was not acknowledged: no stale PUBACK.
            if (on === connection && client.connected) send(packet);
          },
          (error: unknown) => {
            log(`mqtt: could not append to the write-ahead log (${(error as Error).message}); reconnecting so that the broker delivers again`);
            if (on === connection) client.stream.destroy();
          },
        );
    };
    client.handleMessage = (packet, callback) => {
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      const done = handler.receive(packet.topic, payload, { broker: url }, packet.qos > 0 ? `broker ${url}` : null, packet.messageId, packet.dup, session);
      if (packet.qos > 0 && packet.messageId !== undefined) {
        durable.set(packet.messageId, done);
        done.catch(() => undefined);
        callback();
      } else {
        done.then(() => callback(), () => callback());
      }
    };
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        client.removeListener('connect', onConnect);
        void client.endAsync(true);
        reject(new Error(`mqtt: cannot connect to ${url}: ${error.message}`));
      };
      const onConnect = (): void => {
        client.removeListener('error', onError);
        resolve();
      };
      client.once('connect', onConnect);
      client.once('error', onError);
    });
    await client.subscribeAsync([...this.topics], { qos: 1 });
    const address = new URL(url);
    return {
      address: { host: address.hostname, port: Number(address.port || 1883), url },
      stop: async () => {
        await handler.idle();
        await acks;
        await client.endAsync(false);
      },
    };
  }
}

/** Turns received messages into log appends, with backpressure and redelivery detection; shared by both modes. */
class MessageHandler<T> {
  private pending = 0;
  private idleWaiters: Array<() => void> = [];
  readonly redeliveries = new Redeliveries();
  /** Connections whose first messages are still the log's copies (redeliveries come first). */
  private readonly replaying = new WeakMap<object, boolean>();

  constructor(
    readonly ingest: Ingest,
    private readonly decode: ReturnType<typeof payloadDecoder<T>>,
    private readonly format: PayloadFormat,
    private readonly maxBytes: number,
  ) {}

  /**
   * Appends a message (its records, or its dead letters); resolves once durable. Waits while the
   * backlog is full. A QoS 1 message (`session` and packet `id` given) delivered again — with the
   * DUP flag, or among the first messages of a connection, where a sender resends what it has not
   * seen acknowledged (not every client sets DUP: mqtt.js does not) — that the log already holds
   * is not appended again: it resolves once that copy is durable.
   */
  async receive(topic: string, payload: Buffer, origin: Record<string, unknown>, session: string | null, id: number | undefined, dup: boolean, connection: object): Promise<void> {
    const m = this.ingest.metrics;
    m.requests++;
    m.bytes += payload.length;
    this.pending++;
    try {
      const identity = session === null || id === undefined ? null : { session, id, hash: messageHash(topic, payload) };
      if (identity !== null && (dup || this.replaying.get(connection) !== false)) {
        const copy = this.redeliveries.copyOf(identity);
        if (copy !== null) {
          m.duplicates++;
          await copy;
          return;
        }
      }
      // A new message: what follows on this connection is new too (unless flagged DUP).
      this.replaying.set(connection, false);
      if (this.ingest.full && !this.ingest.closing) {
        m.backpressured++;
        await this.ingest.drained();
      }
      if (this.ingest.closing) throw new Error('the source is stopping');
      const receivedAt = Date.now();
      const meta = messageMeta(topic, identity);
      let appending: Promise<unknown>;
      if (payload.length > this.maxBytes) {
        const message = `message of ${payload.length} bytes is larger than the limit (${this.maxBytes} bytes)`;
        appending = this.ingest.reject(new DecodeError(message, payload.length, previewOf(payload), undefined, 'too-large'), 'too-large', receivedAt, meta, { topic, ...origin });
      } else {
        const parts = this.decode(payload, this.format).parts;
        if (parts.length === 0) {
          this.ingest.count('empty');
          return;
        }
        appending = this.ingest.append(parts, receivedAt, meta, { topic, ...origin });
      }
      // In append order: what a redelivery is matched against.
      if (identity !== null) this.redeliveries.appended(identity, appending.then(() => undefined));
      await appending;
    } finally {
      if (--this.pending === 0) {
        const w = this.idleWaiters;
        this.idleWaiters = [];
        for (const r of w) r();
      }
    }
  }

  /** Resolves when no message is being appended. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}

/** Whether topic `topic` matches filter `filter` (MQTT 3.1.1 section 4.7). */
export function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return !(i === 0 && t[0]!.startsWith('$'));
    if (i >= t.length) return false;
    if (f[i] === '+') {
      if (i === 0 && t[0]!.startsWith('$')) return false;
      continue;
    }
    if (f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function validFilter(filter: string): void {
  const levels = filter.split('/');
  levels.forEach((l, i) => {
    if (l === '#' && i !== levels.length - 1) throw new Error(`mqtt: '#' must be the last level of a topic filter, in '${filter}'`);
    if (l !== '#' && l !== '+' && (l.includes('#') || l.includes('+'))) throw new Error(`mqtt: a wildcard must fill a whole level, in '${filter}'`);
  });
}
