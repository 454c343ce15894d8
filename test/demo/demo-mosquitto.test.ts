/**
 * `spate demo --mqtt-url` on the real Mosquitto (scripts/services.sh up mosquitto;
 * SPATE_MQTT_URL): the simulated fleet publishes its MQTT third there, the job subscribes there
 * (no in-process broker), and what the fleet publishes is ingested — the mqtt source's records
 * grow, the readings of the devices that speak MQTT reach device_stats, and the only dead letters
 * of the mqtt step are the fleet's own faults (malformed and oversized messages). The job's
 * persistent session at the broker, under a client id of the test's own, is removed afterwards.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES } from '../../src/demo/pipeline.ts';
import { protocolOf } from '../../src/demo/sender.ts';
import { apiQuery, type DemoProcess, spateQuery, startDemo, steps, until } from '../support/demo.ts';

const MOSQUITTO = process.env['SPATE_MQTT_URL'] ?? 'mqtt://127.0.0.1:1883';
const root = mkdtempSync(join(tmpdir(), 'spate-demo-mqtt-'));
const dir = join(root, 'demo');
const clientId = `spate-demo-test-${randomUUID().slice(0, 8)}`;
let demo: DemoProcess;
/** A subscriber of our own at Mosquitto: it sees what the fleet publishes there. */
let watcher: MqttClient;
let published = 0;

beforeAll(async () => {
  watcher = await mqtt.connectAsync(MOSQUITTO, { reconnectPeriod: 0, clean: true });
  watcher.on('message', () => published++);
  await watcher.subscribeAsync('sensors/+/readings', { qos: 0 });
  demo = await startDemo(dir, ['--devices', '200', '--rate', '1000', '--mqtt-url', MOSQUITTO, '--mqtt-client-id', clientId]);
});

afterAll(async () => {
  await demo?.kill();
  await watcher?.endAsync(true).catch(() => undefined);
  // The job's persistent session would otherwise keep queueing sensors/+/readings at the broker.
  await (await mqtt.connectAsync(MOSQUITTO, { clientId, clean: true, reconnectPeriod: 0 })).endAsync().catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

/** Does something accept TCP connections on 127.0.0.1:port? */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Whether a dead letter of the mqtt step is one of the fleet's faults. Its record is the
 * endpoint's description of the message as JSON text (cut to 1 000 characters by the demo: an
 * oversized message's payload preview is longer, so it is read with patterns, not parsed).
 */
function fleetFault(error: string, record: string): boolean {
  if (!/^\{"endpoint":"mqtt",.*"topic":"sensors\/sensor-\d{4}\/readings"/.test(record)) return false;
  // Oversized: a reading padded with a note to 1 KiB past the endpoint's limit.
  if (/is larger than the limit/.test(error)) {
    const size = Number(/"size":(\d+)/.exec(record)?.[1]);
    return size > MAX_MESSAGE_BYTES && record.includes('\\"note\\":\\"xxxxxxxx');
  }
  let payload: string;
  try {
    payload = (JSON.parse(record) as { payload: string }).payload;
  } catch {
    return false;
  }
  // Malformed, one of four kinds: truncated JSON, a level that is not a number, an unknown region, an unknown field.
  if (/^malformed JSON/.test(error)) return /^\{"id":"sensor-\d{4}-bad","device":"sensor-\d{4}","time":\d+,"db":$/.test(payload);
  if (error === 'db must be a number from 0 to 140') return payload.includes('"db":"loud"');
  if (/^region must be one of/.test(error)) return payload.includes('"region":"mars"');
  if (error === "unknown field 'firmware'") return payload.includes('"firmware":"1.2"');
  return false;
}

describe('spate demo --mqtt-url (Mosquitto)', () => {
  it('subscribes at the external broker instead of running its own', async () => {
    expect(demo.stdout()).toContain(`MQTT       ${MOSQUITTO}  (topic sensors/<device>/readings, QoS 1; the job subscribes as ${clientId})`);
    expect(await listening(demo.ports.mqtt)).toBe(false);
    expect(await listening(demo.ports.http)).toBe(true);
  });

  it('ingests what the fleet publishes through Mosquitto', async () => {
    await until('the fleet publishing at Mosquitto', () => published > 100, 30_000);
    const first = await until('records from the mqtt source', async () => {
      const n = (await steps(demo.url)).get('mqtt')?.recordsOut ?? 0;
      return n > 0 ? n : false;
    }, 30_000);
    await until('more records from the mqtt source', async () => ((await steps(demo.url)).get('mqtt')?.recordsOut ?? 0) > first + 500, 30_000);
    // Readings of the devices that speak MQTT (a third of them) reach the results.
    const devices = await until('device_stats of devices that publish over MQTT', async () => {
      const { rows } = await apiQuery(demo.url, 'SELECT DISTINCT device FROM device_stats');
      const overMqtt = rows.map((r) => r['device'] as string).filter((d) => protocolOf(d) === 'mqtt');
      return overMqtt.length > 20 ? overMqtt : false;
    }, 40_000);
    expect(devices.every((d) => /^sensor-\d{4}$/.test(d))).toBe(true);
  });

  it('stops on SIGTERM with exit code 0; the only dead letters of the mqtt step are the fleet\'s faults', async () => {
    const mqttRecords = (await steps(demo.url)).get('mqtt')!.recordsOut;
    const { code, signal } = await demo.stop();
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    const dead = (await spateQuery('SELECT step, error, record FROM dead_letters', ['--dir', dir])) as Array<{ step: string; error: string; record: string }>;
    // Dead letters come from the endpoints only (their validation), never from the analytics or the sinks.
    expect(dead.filter((d) => !['http', 'websocket', 'mqtt'].includes(d.step))).toEqual([]);
    const overMqtt = dead.filter((d) => d.step === 'mqtt');
    expect(overMqtt.length).toBeGreaterThan(0); // ~0.6 % of ~330 messages a second
    expect(overMqtt.filter((d) => !fleetFault(d.error, d.record))).toEqual([]);
    // The faults are a small share of what came over MQTT (0.6 % by default).
    expect(overMqtt.length).toBeLessThan(mqttRecords * 0.05 + 10);
  });
});
