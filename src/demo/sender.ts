/**
 * Ships a simulated {@link Fleet}'s messages to a job the way real devices would: a third of the
 * devices over HTTP (NDJSON batches with an `Idempotency-Key`, retried under the same key), a
 * third over one WebSocket connection (NDJSON messages, answered in order), a third over MQTT
 * (QoS 1, a persistent session). Each protocol waits and retries while the job is away or asks
 * for it (429/503, retry answers, a broker without PUBACK), so what the job acknowledged is known
 * here: `onAcknowledged` hears every message the job took, which is what the demo's crash test
 * holds the stored results to.
 */
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { hashString } from '../util/hash.ts';
import { type Fleet, type Message } from './fleet.ts';

/** Where the job listens. */
export interface SenderTargets {
  /** e.g. `http://127.0.0.1:7071/ingest` */
  readonly http: string;
  /** e.g. `ws://127.0.0.1:7072/ingest` */
  readonly ws: string;
  /** e.g. `mqtt://127.0.0.1:7073` */
  readonly mqtt: string;
  readonly token?: string;
}

export type Protocol = 'http' | 'ws' | 'mqtt';
export const PROTOCOLS: readonly Protocol[] = ['http', 'ws', 'mqtt'];

/** Counters of a sender, per protocol. */
export interface SenderStats {
  /** Messages handed to the protocol (retries not counted again). */
  readonly sent: Record<Protocol, number>;
  /** Messages the job acknowledged as stored (accepted or refused as bad: either way, taken). */
  readonly acknowledged: Record<Protocol, number>;
  /** Messages the job refused (malformed, oversized): dead letters there. */
  readonly refused: Record<Protocol, number>;
  /** Messages waiting to be sent or acknowledged. */
  readonly pending: Record<Protocol, number>;
  /** Retries after backpressure answers or broken connections. */
  retries: number;
  /** Messages dropped because the device buffer (`maxPending`) was full while the job was away. */
  dropped: number;
}

/** Options of a {@link FleetSender}. */
export interface SenderOptions {
  /** Called once per message the job acknowledged; `accepted` is false for refused ones. */
  readonly onAcknowledged?: (message: Message, protocol: Protocol, accepted: boolean) => void;
  /** Messages buffered per protocol while the job is away; beyond, the oldest are dropped (default 200 000). */
  readonly maxPending?: number;
  /** Readings per HTTP request or WebSocket message (default 500). */
  readonly batch?: number;
  /** A message bigger than this is sent alone (default 4 KiB): one oversized reading does not sink a batch. */
  readonly aloneAbove?: number;
  /**
   * MQTT connections the devices share, as gateways would (default 8). A broker takes one
   * client's messages one after another, so one connection would be held to one durable append
   * at a time; several let the job's log group their appends into one fsync.
   */
  readonly mqttClients?: number;
}

const zero = (): Record<Protocol, number> => ({ http: 0, ws: 0, mqtt: 0 });
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The protocol a device speaks: fixed per device, a third each. */
export function protocolOf(device: string): Protocol {
  return PROTOCOLS[hashString(device) % 3]!;
}

/**
 * Sends a fleet's messages to a job until `stop()`. `tick()` is called every `intervalMs` (100 ms):
 * the fleet's due messages are queued per protocol and shipped by three independent loops.
 */
export class FleetSender {
  readonly stats: SenderStats = { sent: zero(), acknowledged: zero(), refused: zero(), pending: zero(), retries: 0, dropped: 0 };
  private readonly queues: Record<Protocol, Message[]> = { http: [], ws: [], mqtt: [] };
  private readonly wake: Record<Protocol, (() => void) | null> = { http: null, ws: null, mqtt: null };
  private running = true;
  private timer: NodeJS.Timeout | null = null;
  private readonly loops: Promise<void>[];
  private readonly maxPending: number;
  private readonly batch: number;
  private readonly aloneAbove: number;
  private readonly mqttClients: MqttClient[] = [];
  private socket: WebSocket | null = null;
  private httpSeq = 0;
  private readonly nonce = Math.random().toString(36).slice(2, 10);

  constructor(
    private readonly fleet: Fleet | null,
    private readonly targets: SenderTargets,
    private readonly options: SenderOptions = {},
    intervalMs = 100,
  ) {
    this.maxPending = options.maxPending ?? 200_000;
    this.batch = options.batch ?? 500;
    this.aloneAbove = options.aloneAbove ?? 4096;
    if (fleet !== null) this.timer = setInterval(() => this.send(fleet.tick()), intervalMs);
    this.loops = [this.httpLoop(), this.wsLoop(), this.mqttLoop()];
  }

  /** Queues messages (the fleet's, or a test's own) on their devices' protocols. */
  send(messages: readonly Message[], protocol?: Protocol): void {
    for (const m of messages) {
      const p = protocol ?? protocolOf(m.device);
      const q = this.queues[p];
      q.push(m);
      this.stats.sent[p]++;
      if (q.length > this.maxPending) {
        q.shift();
        this.stats.dropped++;
      }
      this.stats.pending[p] = q.length;
    }
    for (const p of PROTOCOLS) this.wake[p]?.();
  }

  /** Resolves once every queued message is acknowledged (or `timeoutMs` passed: false). */
  async drain(timeoutMs = 60_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (PROTOCOLS.every((p) => this.stats.pending[p] === 0 && this.inFlight[p] === 0)) return true;
      await sleep(20);
    }
    return false;
  }

  /** Messages sent but not yet answered, per protocol. */
  private readonly inFlight: Record<Protocol, number> = zero();

  /**
   * Stops the fleet (no new messages), waits until everything sent is acknowledged, then stops;
   * false if that took longer than `timeoutMs`.
   */
  async finish(timeoutMs = 60_000): Promise<boolean> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    const drained = await this.drain(timeoutMs);
    await this.stop();
    return drained;
  }

  /** Stops the fleet and the loops; unacknowledged messages are abandoned. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== null) clearInterval(this.timer);
    for (const p of PROTOCOLS) this.wake[p]?.();
    this.socket?.terminate();
    await Promise.all(this.mqttClients.map((c) => c.endAsync(true).catch(() => undefined)));
    await Promise.all(this.loops);
  }

  private async idle(p: Protocol, ms = 1000): Promise<void> {
    if (!this.running) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wake[p] = done;
    });
    this.wake[p] = null;
  }

  /** The next messages of a queue to send together: a batch, or one big message alone. */
  private take(p: Protocol): Message[] {
    const q = this.queues[p];
    const first = q[0]!;
    const n = first.payload.length > this.aloneAbove ? 1 : Math.min(this.batch, q.findIndex((m) => m.payload.length > this.aloneAbove) >>> 0, q.length);
    const out = q.splice(0, Math.max(1, n));
    this.stats.pending[p] = q.length;
    return out;
  }

  private acknowledge(p: Protocol, batch: readonly Message[], refused: ReadonlySet<number>): void {
    this.inFlight[p] -= batch.length;
    batch.forEach((m, i) => {
      const ok = !refused.has(i);
      this.stats.acknowledged[p]++;
      if (!ok) this.stats.refused[p]++;
      this.options.onAcknowledged?.(m, p, ok);
    });
  }

  private headers(extra: Record<string, string>): Record<string, string> {
    return this.targets.token === undefined ? extra : { ...extra, authorization: `Bearer ${this.targets.token}` };
  }

  // ---- HTTP: NDJSON batches, one request at a time, retried under the same Idempotency-Key.

  private async httpLoop(): Promise<void> {
    while (this.running) {
      if (this.queues.http.length === 0) {
        await this.idle('http');
        continue;
      }
      const batch = this.take('http');
      this.inFlight.http += batch.length;
      const key = `${this.nonce}-${++this.httpSeq}`;
      const body = batch.map((m) => m.payload).join('\n') + '\n';
      for (;;) {
        if (!this.running) return;
        let status: number;
        let answer: { errors?: Array<{ line?: number }> } = {};
        let retryAfter = 1;
        try {
          const res = await fetch(this.targets.http, { method: 'POST', headers: this.headers({ 'content-type': 'application/x-ndjson', 'idempotency-key': key }), body });
          status = res.status;
          retryAfter = Number(res.headers.get('retry-after') ?? 1) || 1;
          const text = await res.text();
          try {
            answer = JSON.parse(text) as typeof answer;
          } catch {
            answer = {};
          }
        } catch {
          status = 0; // connection refused or reset: the job is away
        }
        if (status === 200 || status === 207 || status === 400 || status === 413 || status === 422) {
          // Taken: stored, or refused as bad (a dead letter there). Lines are 1-based.
          const refused = new Set<number>();
          if (status === 207) for (const e of answer.errors ?? []) if (e.line !== undefined) refused.add(e.line - 1);
          if (status !== 200 && status !== 207) batch.forEach((_, i) => refused.add(i));
          this.acknowledge('http', batch, refused);
          break;
        }
        this.stats.retries++;
        await sleep(status === 0 ? 500 : Math.min(5, retryAfter) * 1000);
      }
    }
  }

  // ---- WebSocket: one connection, NDJSON messages answered in order; resent after a break.

  private async wsLoop(): Promise<void> {
    const unanswered: Message[][] = [];
    while (this.running) {
      if (this.queues.ws.length === 0 && unanswered.length === 0) {
        await this.idle('ws');
        continue;
      }
      const socket = await this.connectWs();
      if (socket === null) {
        await sleep(500);
        continue;
      }
      // What was sent on a broken connection and never answered goes again (the job drops the repeats by id).
      const resend = unanswered.splice(0);
      for (const b of resend) this.inFlight.ws -= b.length;
      this.queues.ws.unshift(...resend.flat());
      let retryAt = 0;
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.on('message', (data: Buffer) => {
        const batch = unanswered.shift();
        if (batch === undefined) return;
        let a: { retry?: boolean; retryAfter?: number; errors?: Array<{ line?: number }>; error?: string };
        try {
          a = JSON.parse(data.toString()) as typeof a;
        } catch {
          a = {};
        }
        if (a.retry === true) {
          // Nothing of it was stored: back to the queue's front after a pause (later messages
          // on the connection are answered in their turn).
          this.inFlight.ws -= batch.length;
          this.queues.ws.unshift(...batch);
          this.stats.retries++;
          retryAt = Date.now() + Math.min(5, a.retryAfter ?? 1) * 1000;
          return;
        }
        const refused = new Set<number>();
        for (const e of a.errors ?? []) if (e.line !== undefined) refused.add(e.line - 1);
        if (a.errors === undefined && a.error !== undefined) batch.forEach((_, i) => refused.add(i));
        this.acknowledge('ws', batch, refused);
      });
      let open = true;
      void closed.then(() => (open = false));
      while (this.running && open) {
        if (Date.now() < retryAt || this.queues.ws.length === 0 || unanswered.length >= 8) {
          await Promise.race([this.idle('ws', 50), closed]);
          continue;
        }
        const batch = this.take('ws');
        this.inFlight.ws += batch.length;
        unanswered.push(batch);
        socket.send(batch.map((m) => m.payload).join('\n'));
      }
      socket.terminate();
      await closed;
      if (this.running) this.stats.retries++;
    }
  }

  private connectWs(): Promise<WebSocket | null> {
    return new Promise((resolve) => {
      const socket = new WebSocket(this.targets.ws, { headers: this.headers({}) });
      socket.once('open', () => {
        this.socket = socket;
        resolve(socket);
      });
      socket.once('error', () => resolve(null));
    });
  }

  // ---- MQTT: QoS 1 publishes on a persistent session; mqtt.js keeps and resends what is unacknowledged.

  private async mqttLoop(): Promise<void> {
    const n = Math.max(1, this.options.mqttClients ?? 8);
    for (let i = 0; i < n; i++) {
      const client = mqtt.connect(this.targets.mqtt, {
        clientId: `spate-demo-fleet-${this.nonce}-${i}`,
        clean: false,
        reconnectPeriod: 500,
        connectTimeout: 5_000,
        ...(this.targets.token === undefined ? {} : { username: 'fleet', password: this.targets.token }),
      });
      client.on('error', () => undefined); // reconnects by itself
      this.mqttClients.push(client);
    }
    let inFlight = 0;
    while (this.running) {
      if (this.queues.mqtt.length === 0 || inFlight >= 1000) {
        await this.idle('mqtt', 50);
        continue;
      }
      const m = this.queues.mqtt.shift()!;
      this.stats.pending.mqtt = this.queues.mqtt.length;
      inFlight++;
      this.inFlight.mqtt++;
      // A device always goes through the same connection (its readings stay in order).
      this.mqttClients[hashString(m.device) % n]!.publish(`sensors/${m.device}/readings`, m.payload, { qos: 1 }, (error) => {
        inFlight--;
        // An error here is the client ending (stop): the message is abandoned, not acknowledged.
        if (error === undefined || error === null) this.acknowledge('mqtt', [m], new Set());
        else this.inFlight.mqtt--;
        this.wake.mqtt?.();
      });
    }
  }
}
