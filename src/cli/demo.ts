import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { Pipeline } from '../api/pipeline.ts';
import { postgresQueryEngine } from '../connectors/postgres/query-engine.ts';
import { DEFAULT_FAULTS, parseFaults } from '../demo/fleet.ts';
import type { FleetWorkerData } from '../demo/fleet-worker.ts';
import { buildDemoJob, parseDemoJobArgs } from '../demo/pipeline.ts';
import { PROTOCOLS, type SenderStats, type SenderTargets } from '../demo/sender.ts';
import { MAX_KEY_GROUPS } from '../runtime/options.ts';
import { isLoopbackAddress } from '../ui/dashboard.ts';
import { siblingEntry, startModuleWorker } from '../util/module-worker.ts';
import { numericArg, UsageError } from './args.ts';
import { runToEnd } from './run.ts';

export const DEMO_USAGE = `spate demo [options]        (what npm start runs)

A fleet of simulated street noise sensors sends readings over HTTP, WebSocket and MQTT into one
Spate job on every core: validated, deduplicated, analysed (10 s stats, sliding 1-minute p95,
anomaly alerts, active devices per region, the noisiest devices), stored exactly once in an
embedded DuckDB file and shown on a live dashboard. Stop it with Ctrl-C; started again with the
same --dir, it resumes from its last checkpoint.

options:
  --port P                dashboard port (default: $PORT, else 7070); the endpoints listen on
                          P+1 (HTTP), P+2 (WebSocket) and P+3 (MQTT) unless set below
  --host H                address to bind (default 127.0.0.1); any other needs a token:
                          --token, SPATE_UI_TOKEN, or a random one printed with the URL
  --token T               bearer token for the dashboard and the endpoints
  --http-port P, --ws-port P, --mqtt-port P
  --mqtt-url URL          ingest from this external MQTT broker (mqtt://host:1883) instead of the
                          in-process one; the fleet publishes there
  --mqtt-client-id ID     the job's client id there: its persistent session, which keeps what the
                          job has not taken while it is down (default: spate-demo-<hash of --dir>,
                          so demos in other directories do not take each other's session over)
  --devices N             simulated devices (default 500; 0: no fleet, only what you send)
  --rate R                readings per second over the fleet (default 2000)
  --faults SPEC           fault mix, e.g. outOfOrder=0.1,late=0.02,malformed=0.01,duplicate=0.02,
                          oversized=0.001 (the rest keep their defaults; none: no faults)
  --seed N                the fleet's random seed (default 7)
  --store duckdb|postgres where results go (default duckdb: DIR/results.duckdb)
  --pg-url URL            PostgreSQL for --store postgres (default: the PG* environment)
  --dir DIR               checkpoints, ingestion logs and the DuckDB file (default .spate/demo)
  --fresh                 delete DIR first: start over
  --parallelism P         instances of every step (default: the number of cores)
  --checkpoint-interval MS  (default 2000)
  --seconds S             stop after S seconds (default 0: until Ctrl-C or SIGTERM)
  -h, --help              this text

Query the results while it runs: spate query "SELECT * FROM device_stats LIMIT 5"
`;

/** `spate demo`: the sensors-to-screen job, on embedded defaults (no external service). */
export async function runDemo(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      token: { type: 'string' },
      'http-port': { type: 'string' },
      'ws-port': { type: 'string' },
      'mqtt-port': { type: 'string' },
      'mqtt-url': { type: 'string' },
      'mqtt-client-id': { type: 'string' },
      devices: { type: 'string' },
      rate: { type: 'string' },
      faults: { type: 'string' },
      seed: { type: 'string' },
      store: { type: 'string' },
      'pg-url': { type: 'string' },
      dir: { type: 'string' },
      fresh: { type: 'boolean' },
      parallelism: { type: 'string' },
      'checkpoint-interval': { type: 'string' },
      seconds: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(DEMO_USAGE);
    return 0;
  }
  const port = numericArg('port', values.port ?? process.env['PORT'], 7070, { integer: true, min: 1, max: 65532 });
  const endpointPort = (name: string, raw: string | undefined, offset: number): number => numericArg(name, raw, port + offset, { integer: true, min: 0, max: 65535 });
  const httpPort = endpointPort('http-port', values['http-port'], 1);
  const wsPort = endpointPort('ws-port', values['ws-port'], 2);
  const mqttPort = endpointPort('mqtt-port', values['mqtt-port'], 3);
  const devices = numericArg('devices', values.devices, 500, { integer: true, min: 0, max: 1_000_000 });
  const rate = numericArg('rate', values.rate, 2000, { min: 0, exclusiveMin: true, max: 1_000_000, hint: 'readings per second' });
  const seed = numericArg('seed', values.seed, 7, { integer: true, min: 0 });
  const seconds = numericArg('seconds', values.seconds, 0, { min: 0, max: 2_147_483, hint: '0: run until stopped' });
  const parallelism = numericArg('parallelism', values.parallelism, availableParallelism(), { integer: true, min: 1, max: MAX_KEY_GROUPS });
  const interval = numericArg('checkpoint-interval', values['checkpoint-interval'], 2000, { min: 1, hint: 'ms' });
  let faults = DEFAULT_FAULTS;
  if (values.faults !== undefined) {
    try {
      faults = parseFaults(values.faults);
    } catch (error) {
      throw new UsageError(`--faults: ${(error as Error).message}`);
    }
  }
  const host = values.host ?? '127.0.0.1';
  let token = values.token ?? process.env['SPATE_UI_TOKEN'];
  if (token === '') token = undefined;
  if (token === undefined && !isLoopbackAddress(host)) token = randomBytes(18).toString('base64url');

  const dir = resolve(values.dir ?? '.spate/demo');
  if (values.fresh) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const checkpointDir = join(dir, 'checkpoints');
  if (values['mqtt-client-id'] !== undefined && values['mqtt-url'] === undefined) throw new UsageError('--mqtt-client-id needs --mqtt-url');
  // Stable across restarts in the same directory (the session resumes), distinct between directories.
  const mqttClientId = values['mqtt-url'] === undefined ? undefined : (values['mqtt-client-id'] ?? `spate-demo-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`);
  const moduleArgs = [
    '--host', host,
    '--http-port', String(httpPort),
    '--ws-port', String(wsPort),
    '--mqtt-port', String(mqttPort),
    '--duckdb', join(dir, 'results.duckdb'),
    ...(token === undefined ? [] : ['--token', token]),
    ...(values['mqtt-url'] === undefined ? [] : ['--mqtt-url', values['mqtt-url'], '--mqtt-client-id', mqttClientId!]),
    ...(values.store === undefined ? [] : ['--store', values.store]),
    ...(values['pg-url'] === undefined ? [] : ['--pg-url', values['pg-url']]),
  ];
  let config;
  try {
    config = parseDemoJobArgs(moduleArgs);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }

  // The module the worker threads load: the demo job, from the sources or compiled alike.
  const pipelineModule = new URL(`../demo/pipeline${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
  const p = new Pipeline({
    checkpointDir,
    checkpointInterval: interval,
    parallelism,
    ...(parallelism > 1 ? { workers: { module: pipelineModule.href, args: moduleArgs } } : {}),
  });
  const endpoints = buildDemoJob(p, config);
  const queries = config.store === 'postgres' ? postgresQueryEngine(config.pgUrl) : undefined;
  const log = (line: string): void => void process.stderr.write(line + '\n');
  const out = (line: string): void => void process.stdout.write(line + '\n');

  return runToEnd(p, 'demo', checkpointDir, log, { port, host, title: 'Spate demo: street noise sensors', ...(token === undefined ? {} : { token }), ...(queries === undefined ? {} : { queries }) }, {
    started: async (job, dashboard) => {
      // An endpoint that cannot start (its port taken, the broker refusing) fails the job, and its
      // listening() never resolves: the job's end is the answer then.
      const ended = job.done.then(
        () => Promise.reject(new Error('the demo job ended before its endpoints listened')),
        (error: unknown) => Promise.reject(error),
      );
      const [http, ws, mqtt] = await Promise.race([Promise.all([endpoints.http.listening(), endpoints.websocket.listening(), endpoints.mqtt.listening()]), ended]);
      const targets: SenderTargets = { http: http.url, ws: ws.url, mqtt: values['mqtt-url'] ?? mqtt.url, ...(token === undefined ? {} : { token }) };
      const url = `${dashboard!.url}${token === undefined ? '' : `?token=${encodeURIComponent(token)}`}`;
      const where = relative(process.cwd(), dir) || '.';
      out(
        [
          '',
          `Spate demo: street noise sensors — open ${url}`,
          '',
          `  ${devices > 0 ? `${devices} simulated devices send ${rate} readings/s` : 'No simulated devices (--devices 0): send your own'} over`,
          `    HTTP       ${targets.http}`,
          `    WebSocket  ${targets.ws}`,
          `    MQTT       ${targets.mqtt}  (topic sensors/<device>/readings, QoS 1${mqttClientId === undefined ? '' : `; the job subscribes as ${mqttClientId}`})`,
          `  into one job on ${parallelism} thread(s), checkpointing every ${interval} ms into ${where}/checkpoints;`,
          `  results exactly once in ${config.store === 'duckdb' ? `${where}/results.duckdb` : 'PostgreSQL'}: spate query "SELECT * FROM device_stats ORDER BY window_end DESC LIMIT 5"${where === '.spate/demo' ? '' : ` --dir ${where}`}`,
          '',
          `  Send a reading yourself:`,
          `    curl -d '{"id":"r-1","device":"my-sensor","region":"north","time":'$(date +%s000)',"db":61.5}' ${targets.http}`,
          '',
        ].join('\n'),
      );
      let fleet: Worker | null = null;
      let stats: SenderStats | null = null;
      if (devices > 0) {
        const data: FleetWorkerData = { devices, rate, faults, seed, targets, oversizedBytes: config.maxMessageBytes + 1024 };
        fleet = startModuleWorker(siblingEntry(pipelineModule.href, 'fleet-worker'), { workerData: data });
        fleet.on('message', (s: SenderStats) => (stats = s));
        fleet.on('error', (error) => log(`spate demo: the simulated fleet failed: ${error.message}`));
      }
      let last = { at: Date.now(), acknowledged: 0 };
      const report = setInterval(() => {
        const metrics = job.job.metrics();
        const ingested = metrics.filter((m) => m.kind === 'source').reduce((n, m) => n + m.recordsOut, 0);
        const checkpoints = job.job.checkpoints().filter((c) => c.status === 'completed').length;
        let line = `[${new Date().toISOString().slice(11, 19)}] ${ingested.toLocaleString('en-US')} readings ingested, ${job.job.deadLetterCount()} dead letters, ${checkpoints} checkpoints`;
        if (stats !== null) {
          const acknowledged = PROTOCOLS.reduce((n, k) => n + stats!.acknowledged[k], 0);
          const now = Date.now();
          line += `; fleet: ${Math.round(((acknowledged - last.acknowledged) * 1000) / Math.max(1, now - last.at))}/s acknowledged (${PROTOCOLS.map((k) => `${k} ${stats!.acknowledged[k]}`).join(', ')}), ${stats.retries} retries`;
          last = { at: now, acknowledged };
        }
        out(line);
      }, 10_000);
      report.unref();
      const deadline = seconds > 0 ? setTimeout(() => void job.stop(), seconds * 1000) : null;
      return async () => {
        clearInterval(report);
        if (deadline !== null) clearTimeout(deadline);
        if (fleet !== null) {
          const stopped = new Promise<void>((resolve) => fleet!.once('exit', () => resolve()));
          fleet.postMessage('stop');
          await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 3000))]);
          await fleet.terminate();
        }
        await queries?.close();
      };
    },
  });
}
