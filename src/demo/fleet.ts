import { MAX_DB, type Reading, REGIONS } from './model.ts';

/**
 * The mix of faults a simulated fleet injects, each a fraction of the messages it sends. They are
 * what a real fleet does to a stream processor: readings that arrive out of order (within a few
 * seconds: the watermark allows for it), late (tens of seconds: they correct closed windows for
 * 30 s, later ones are counted and kept aside), malformed (not JSON, or JSON that is not a
 * reading), duplicated (a device resending a message whose acknowledgement it missed) and
 * oversized (a payload past the ingestion limit).
 */
export interface FaultMix {
  readonly outOfOrder: number;
  readonly late: number;
  readonly malformed: number;
  readonly duplicate: number;
  readonly oversized: number;
}

export const DEFAULT_FAULTS: FaultMix = { outOfOrder: 0.05, late: 0.01, malformed: 0.005, duplicate: 0.01, oversized: 0.001 };

/** Parses `outOfOrder=0.1,late=0.02,…` (any subset; the rest keep their defaults; `none` for no faults). */
export function parseFaults(spec: string): FaultMix {
  if (spec === 'none') return { outOfOrder: 0, late: 0, malformed: 0, duplicate: 0, oversized: 0 };
  const out: Record<string, number> = { ...DEFAULT_FAULTS };
  for (const part of spec.split(',')) {
    const [name, value] = part.split('=');
    if (name === undefined || !(name in DEFAULT_FAULTS)) throw new Error(`unknown fault '${name ?? ''}': one of ${Object.keys(DEFAULT_FAULTS).join(', ')}`);
    const v = Number(value);
    if (!(v >= 0 && v <= 1)) throw new Error(`fault ${name} must be a fraction from 0 to 1, got '${value ?? ''}'`);
    out[name] = v;
  }
  return out as unknown as FaultMix;
}

/** One message a device sends: the payload, and what the simulator meant by it (for the tests). */
export interface Message {
  readonly device: string;
  /** The JSON text sent (or, for a malformed message, text that is not a valid reading). */
  readonly payload: string;
  readonly kind: 'reading' | 'out-of-order' | 'late' | 'malformed' | 'duplicate' | 'oversized';
  /** The reading's id (not for malformed or oversized messages). */
  readonly id?: string;
}

/** Options of a {@link Fleet}. */
export interface FleetOptions {
  readonly devices: number;
  /** Readings per second over the whole fleet. */
  readonly rate: number;
  readonly faults?: FaultMix;
  readonly seed?: number;
  /** Wall clock, epoch ms (tests pass their own). */
  readonly now?: () => number;
  /** Size an oversized message is padded to (past the ingestion limit), bytes. */
  readonly oversizedBytes?: number;
}

interface Device {
  readonly name: string;
  readonly region: (typeof REGIONS)[number];
  /** Its usual level (dB) and how much it varies. */
  readonly base: number;
  readonly spread: number;
  seq: number;
}

/**
 * A simulated fleet of street noise sensors: `devices` devices spread over the city's regions,
 * each with a level of its own (quiet parks to busy crossings), occasional bursts (a siren, a
 * truck: the anomaly detector's spikes) and the configured faults. `tick()` returns the messages
 * due since the last call, in the order devices send them; the caller ships them over HTTP,
 * WebSocket or MQTT.
 */
export class Fleet {
  private readonly devices: Device[];
  private readonly faults: FaultMix;
  private readonly now: () => number;
  private state: number;
  private last: number;
  private owed = 0;
  /** Messages held back to be sent later (out of order, late), with when to send them. */
  private held: Array<{ at: number; message: Message }> = [];
  /** Recently sent readings, to resend as duplicates. */
  private recent: Message[] = [];

  constructor(private readonly options: FleetOptions) {
    if (!(Number.isInteger(options.devices) && options.devices >= 1)) throw new RangeError(`devices must be a whole number >= 1, got ${options.devices}`);
    if (!(options.rate > 0)) throw new RangeError(`rate must be > 0, got ${options.rate}`);
    this.faults = options.faults ?? DEFAULT_FAULTS;
    this.now = options.now ?? Date.now;
    this.state = (options.seed ?? 7) >>> 0 || 1;
    this.last = this.now();
    this.devices = Array.from({ length: options.devices }, (_, i) => ({
      name: `sensor-${String(i).padStart(4, '0')}`,
      region: REGIONS[i % REGIONS.length]!,
      base: 45 + this.random() * 30,
      spread: 2 + this.random() * 6,
      seq: 0,
    }));
  }

  /** Uniform in [0, 1), reproducible from the seed. */
  private random(): number {
    // xorshift32
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state / 2 ** 32;
  }

  /** The names of the fleet's devices. */
  get deviceNames(): string[] {
    return this.devices.map((d) => d.name);
  }

  /** Messages due now: new readings at the fleet's rate (with faults), and held ones whose time came. */
  tick(): Message[] {
    const now = this.now();
    this.owed += ((now - this.last) / 1000) * this.options.rate;
    this.last = now;
    const out: Message[] = [];
    const n = Math.floor(this.owed);
    this.owed -= n;
    for (let i = 0; i < n; i++) this.next(now, out);
    if (this.held.length > 0) {
      const due = this.held.filter((h) => h.at <= now);
      if (due.length > 0) {
        this.held = this.held.filter((h) => h.at > now);
        for (const h of due) out.push(h.message);
      }
    }
    return out;
  }

  private next(now: number, out: Message[]): void {
    const d = this.devices[Math.floor(this.random() * this.devices.length)]!;
    const f = this.faults;
    const roll = this.random();
    let edge = f.malformed;
    if (roll < edge) {
      out.push({ device: d.name, payload: this.malformed(d, now), kind: 'malformed' });
      return;
    }
    edge += f.oversized;
    if (roll < edge) {
      const pad = 'x'.repeat(this.options.oversizedBytes ?? 2 ** 20);
      out.push({ device: d.name, payload: JSON.stringify({ ...this.reading(d, now), note: pad }), kind: 'oversized' });
      return;
    }
    edge += f.duplicate;
    if (roll < edge && this.recent.length > 0) {
      const again = this.recent[Math.floor(this.random() * this.recent.length)]!;
      out.push({ ...again, kind: 'duplicate' });
      return;
    }
    const reading = this.reading(d, now);
    const message: Message = { device: d.name, payload: JSON.stringify(reading), kind: 'reading', id: reading.id };
    this.recent.push(message);
    if (this.recent.length > 100) this.recent.shift();
    edge += f.outOfOrder;
    if (roll < edge) {
      this.held.push({ at: now + 500 + this.random() * 2500, message: { ...message, kind: 'out-of-order' } });
      return;
    }
    edge += f.late;
    if (roll < edge) {
      this.held.push({ at: now + 15_000 + this.random() * 45_000, message: { ...message, kind: 'late' } });
      return;
    }
    out.push(message);
  }

  private reading(d: Device, now: number): Reading {
    // Mostly around the device's level; now and then a burst far above it.
    const burst = this.random() < 0.003;
    const level = burst ? d.base + 35 + this.random() * 20 : d.base + (this.random() + this.random() + this.random() - 1.5) * d.spread;
    return { id: `${d.name}-${d.seq++}`, device: d.name, region: d.region, time: now, db: Math.round(Math.min(MAX_DB, Math.max(0, level)) * 10) / 10 };
  }

  private malformed(d: Device, now: number): string {
    switch (Math.floor(this.random() * 4)) {
      case 0:
        return `{"id":"${d.name}-bad","device":"${d.name}","time":${now},"db":`; // truncated JSON
      case 1:
        return JSON.stringify({ id: `${d.name}-x${d.seq}`, device: d.name, region: d.region, time: now, db: 'loud' }); // wrong type
      case 2:
        return JSON.stringify({ id: `${d.name}-x${d.seq}`, device: d.name, region: 'mars', time: now, db: 50 }); // unknown region
      default:
        return JSON.stringify({ id: `${d.name}-x${d.seq}`, device: d.name, region: d.region, time: now, db: 50, firmware: '1.2' }); // unknown field
    }
  }
}
