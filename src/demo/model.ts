/**
 * The demo's data: noise-level readings from a fleet of street sensors, and what the job derives
 * from them. A reading is what a device sends (HTTP, WebSocket or MQTT, as JSON); the analytics
 * (`analytics.ts`) turn readings into per-device statistics, percentiles, anomaly alerts,
 * active devices per region and the noisiest devices.
 */

/** The regions of the simulated city. */
export const REGIONS = ['north', 'south', 'east', 'west', 'centre'] as const;
export type Region = (typeof REGIONS)[number];

/** One reading as a device sends it. */
export interface Reading {
  /** Unique per message: a device that resends (no acknowledgement seen) resends the same id. */
  readonly id: string;
  readonly device: string;
  readonly region: Region;
  /** When the device measured, epoch ms (event time). */
  readonly time: number;
  /** Sound level, dB(A). */
  readonly db: number;
}

/** The largest reading a sensor can report; above it a reading is rejected as impossible. */
export const MAX_DB = 140;

/**
 * Validates a decoded message as a {@link Reading}: every field present with its type, the level
 * within 0–140 dB, the time a finite epoch-ms number, no unknown fields. Throws a message that
 * names the first problem (the message becomes a dead letter with it).
 */
export function toReading(value: unknown): Reading {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('a reading is a JSON object');
  const r = value as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!FIELDS.has(k)) throw new TypeError(`unknown field '${k}'`);
  if (typeof r.id !== 'string' || r.id.length === 0 || r.id.length > 64) throw new TypeError('id must be a string of 1 to 64 characters');
  if (typeof r.device !== 'string' || !/^[A-Za-z0-9_-]{1,32}$/.test(r.device)) throw new TypeError('device must be 1 to 32 letters, digits, _ or -');
  if (typeof r.region !== 'string' || !(REGIONS as readonly string[]).includes(r.region)) throw new TypeError(`region must be one of ${REGIONS.join(', ')}`);
  if (typeof r.time !== 'number' || !Number.isFinite(r.time) || r.time < 0) throw new TypeError('time must be epoch milliseconds');
  if (typeof r.db !== 'number' || !(r.db >= 0 && r.db <= MAX_DB)) throw new TypeError(`db must be a number from 0 to ${MAX_DB}`);
  return { id: r.id, device: r.device, region: r.region as Region, time: r.time, db: r.db };
}

const FIELDS = new Set(['id', 'device', 'region', 'time', 'db']);

/** Per device and 10 s window: how many readings, their mean, lowest and highest level. */
export interface DeviceStats {
  readonly device: string;
  readonly region: Region;
  readonly start: number;
  readonly end: number;
  readonly count: number;
  readonly avg: number;
  readonly min: number;
  readonly max: number;
}

/** Per device, over the last minute (sliding every 10 s): the 95th percentile level. */
export interface DeviceP95 {
  readonly device: string;
  readonly end: number;
  readonly p95: number;
}

/** A reading that stands out from its device's recent levels (EWMA z-score), or a device gone silent. */
export interface Alert {
  readonly device: string;
  readonly time: number;
  readonly kind: 'spike' | 'silent';
  readonly db: number;
  /** How many standard deviations from the device's moving average (spikes). */
  readonly z: number;
}

/** Per region and 10 s window: approximately how many distinct devices reported (HyperLogLog). */
export interface RegionActivity {
  readonly region: Region;
  readonly end: number;
  readonly devices: number;
}

/** Per minute: the devices most often above 85 dB (top-k sketch). */
export interface NoisiestDevices {
  readonly end: number;
  readonly devices: ReadonlyArray<{ readonly device: string; readonly loudReadings: number }>;
}

/** A reading that arrived after its windows had closed, beyond the allowed lateness. */
export interface LateReading extends Reading {
  readonly arrivedAt: number;
}
