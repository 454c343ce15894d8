/**
 * The load generator of bench/ingest.ts, in its own process (so that it does not share the job's
 * thread): sends sensor readings `{ device, temp, i, t }` — `t` the send time in ms with
 * sub-millisecond precision — and prints `{ sent, acked, refused }` as JSON when done.
 *
 *   http <url> <seconds> <connections> <batch> [records per second]
 *   ws   <url> <seconds> <connections> <batch> [records per second]
 *   mqtt <url> <seconds> <clients> <in flight per client> [records per second] [topic]
 *
 * Without a rate, each connection sends as fast as it is answered.
 */
import { Agent, request } from 'node:http';
import mqtt from 'mqtt';
import { WebSocket } from 'ws';

const [mode, url, secondsArg, connectionsArg, batchArg, rateArg, topicArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
const connections = Number(connectionsArg);
const batch = Number(batchArg);
const rate = rateArg === undefined || rateArg === '' ? Infinity : Number(rateArg);
const now = (): number => performance.timeOrigin + performance.now();
let next = 0;
let sent = 0;
let acked = 0;
let refused = 0;
const end = Date.now() + seconds * 1000;

const reading = (): string => {
  const i = next++;
  return `{"device":"d-${i % 1000}","temp":${(20 + (i % 100) / 10).toFixed(1)},"i":${i},"t":${now().toFixed(3)}}`;
};

/** Waits so that the total rate stays at `rate` records per second. */
const started = Date.now();
async function pace(): Promise<void> {
  if (rate === Infinity) return;
  const due = started + (sent / rate) * 1000;
  const wait = due - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

async function http(): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const post = (body: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = request(url!, { method: 'POST', agent, headers: { 'Content-Type': 'application/x-ndjson' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (Date.now() < end) {
        await pace();
        const lines: string[] = [];
        for (let k = 0; k < batch; k++) lines.push(reading());
        sent += batch;
        const status = await post(lines.join('\n'));
        if (status === 200) acked += batch;
        else refused += batch;
      }
    }),
  );
  agent.destroy();
}

async function ws(): Promise<void> {
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const socket = new WebSocket(url!);
      await new Promise((r, j) => socket.once('open', r).once('error', j));
      let waiting: (() => void) | null = null;
      let inFlight = 0;
      socket.on('message', (d) => {
        const a = JSON.parse(d.toString()) as { accepted?: number; retry?: boolean };
        if (a.retry === true) refused += batch;
        else acked += a.accepted ?? 0;
        inFlight--;
        waiting?.();
      });
      while (Date.now() < end) {
        await pace();
        while (inFlight >= 4) await new Promise<void>((r) => (waiting = r));
        const lines: string[] = [];
        for (let k = 0; k < batch; k++) lines.push(reading());
        sent += batch;
        inFlight++;
        socket.send(lines.join('\n'));
      }
      while (inFlight > 0) await new Promise<void>((r) => (waiting = r));
      socket.close();
    }),
  );
}

async function mq(): Promise<void> {
  const topic = topicArg ?? 'bench/readings';
  await Promise.all(
    Array.from({ length: connections }, async (_, c) => {
      const client = await mqtt.connectAsync(url!, { clientId: `bench-${process.pid}-${c}`, reconnectPeriod: 0 });
      let inFlight = 0;
      let waiting: (() => void) | null = null;
      while (Date.now() < end) {
        await pace();
        while (inFlight >= batch) await new Promise<void>((r) => (waiting = r));
        inFlight++;
        sent++;
        client.publish(topic, reading(), { qos: 1 }, (error) => {
          if (error) refused++;
          else acked++;
          inFlight--;
          waiting?.();
        });
      }
      while (inFlight > 0) await new Promise<void>((r) => (waiting = r));
      await client.endAsync();
    }),
  );
}

await (mode === 'http' ? http() : mode === 'ws' ? ws() : mq());
process.stdout.write(JSON.stringify({ sent, acked, refused }) + '\n');
