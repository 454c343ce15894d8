/**
 * `/metrics` in the Prometheus text format 0.0.4, checked line by line by a strict parser written
 * from the format's specification (HELP/TYPE before samples, one group per family, names, label
 * escaping, values, unique series), cross-checked with an independent parser
 * (parse-prometheus-text-format), on a real job and on crafted statuses with awkward names.
 */
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { describe, expect, it } from 'vitest';
import { count, GeneratorSource, Pipeline, tumbling } from '../index.ts';
import type { JobStatus } from '../runtime/job.ts';
import { serveDashboard } from './dashboard.ts';
import { clusterPrometheusText, PROMETHEUS_CONTENT_TYPE, prometheusText } from './prometheus.ts';

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

interface Family {
  readonly name: string;
  help?: string;
  type?: string;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
/** Go's strconv.ParseFloat forms that Prometheus accepts, plus NaN and ±Inf. */
const FLOAT = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;

/** Parses the text format strictly; throws with the line number on the first violation. */
function parseExposition(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition must end with a line feed');
  const families = new Map<string, Family>();
  const series = new Set<string>();
  let current: string | null = null;
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((line, n) => {
    const fail = (why: string): never => {
      throw new Error(`line ${n + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) return; // a plain comment
      const [, kind, name, rest] = m;
      if (!METRIC_NAME.test(name!)) fail('bad metric name');
      const f = family(name!);
      if (f.samples.length > 0) fail(`${kind} after samples of ${name}`);
      if (kind === 'HELP') {
        if (f.help !== undefined) fail('second HELP');
        // Only \\ and \n are escapes in HELP text.
        if (/\\[^\\n]/.test(rest!.replace(/\\\\/g, ''))) fail('bad escape in HELP');
        f.help = rest!;
      } else {
        if (f.type !== undefined) fail('second TYPE');
        if (!TYPES.has(rest!)) fail('unknown type');
        f.type = rest!;
      }
      current = name!;
      return;
    }
    let i = 0;
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (nameMatch === null) fail('no metric name');
    const name = nameMatch![0];
    i = name.length;
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      while (line[i] !== '}') {
        const ln = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
        if (ln === null) fail('bad label name');
        const label = ln![0];
        if (!LABEL_NAME.test(label) || label.startsWith('__')) fail('reserved label name');
        if (label in labels) fail(`duplicate label ${label}`);
        i += label.length;
        if (line[i] !== '=' || line[i + 1] !== '"') fail('expected ="');
        i += 2;
        let value = '';
        for (;;) {
          const c = line[i];
          if (c === undefined) fail('unterminated label value');
          if (c === '"') break;
          if (c === '\\') {
            const e = line[i + 1];
            if (e === '\\') value += '\\';
            else if (e === '"') value += '"';
            else if (e === 'n') value += '\n';
            else fail('bad escape in label value');
            i += 2;
          } else {
            value += c;
            i++;
          }
        }
        labels[label] = value;
        i++;
        if (line[i] === ',') i++;
        else if (line[i] !== '}') fail('expected , or }');
      }
      i++;
    }
    const rest = line.slice(i);
    const m = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
    if (m === null) fail('expected " value [timestamp]"');
    if (!FLOAT.test(m![1]!)) fail('bad value');
    const value = m![1] === '+Inf' || m![1] === 'Inf' ? Infinity : m![1] === '-Inf' ? -Infinity : Number(m![1]);
    const f = families.get(name);
    if (f === undefined || f.type === undefined || f.help === undefined) fail('a sample before its HELP and TYPE');
    if (current !== name) fail(`samples of ${name} are not one group`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (series.has(key)) fail('duplicate series');
    series.add(key);
    if (f!.type === 'counter') {
      if (!name.endsWith('_total')) fail('a counter not named …_total');
      if (!(value >= 0)) fail('a negative or NaN counter');
    }
    f!.samples.push({ name, labels, value });
  });
  return families;
}

function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  return families.get(name)?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('the strict parser', () => {
  it('refuses what the format does not allow', () => {
    const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 3\n';
    expect(parseExposition(ok).get('a_total')!.samples).toHaveLength(1);
    const bad = [
      'a_total 1\n', // no HELP/TYPE
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1', // no final line feed
      '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1} 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total{x="\\q"} 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1",x="2"} 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total one\n',
      '# HELP a_total A.\n# TYPE a_total counters\na_total 1\n',
      '# HELP a A.\n# TYPE a counter\na 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\n# HELP b B.\n# TYPE b gauge\na_total 1\n',
      '# HELP a_total A.\n# TYPE a_total counter\na_total  1\n',
    ];
    for (const text of bad) expect(() => parseExposition(text), text).toThrow();
  });
});

describe('/metrics', () => {
  it('is valid exposition format 0.0.4 for a running job, with counters, watermarks, backpressure, checkpoints and views', async () => {
    const p = new Pipeline();
    const counts = p
      .source(new GeneratorSource({ make: (i) => i, time: (i) => 1_700_000_000_000 + i * 10, ratePerSecond: 500, splits: 2 }), { id: 'numbers' })
      .map(
        (i) => {
          if (i % 40 === 3) throw new Error('bad "quoted" \\ record\nsecond line');
          return i;
        },
        { id: 'check' },
      )
      .keyBy((i) => i % 3)
      .window(tumbling(100))
      .aggregate(count(), (key, n) => ({ key, n }), { id: 'counts' });
    counts.keyBy((r) => r.key).view('counts');
    const running = p.start({ parallelism: 2, checkpointInterval: 100 });
    const dashboard = await serveDashboard(running, { port: 0, sampleIntervalMs: 100 });
    try {
      const deadline = performance.now() + 20_000;
      let text = '';
      let families = new Map<string, Family>();
      // Until a checkpoint has completed and a sample has counted it.
      while (valueOf(families, 'spate_checkpoints_total', { status: 'completed' }) === undefined || valueOf(families, 'spate_checkpoints_total', { status: 'completed' })! < 1) {
        if (performance.now() > deadline) throw new Error(`no completed checkpoint in /metrics:\n${text}`);
        await new Promise((r) => setTimeout(r, 150));
        const res = await fetch(new URL('/metrics', dashboard.url));
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE);
        text = await res.text();
        families = parseExposition(text);
      }
      expect(valueOf(families, 'spate_job_phase', { phase: 'running' })).toBe(1);
      expect(valueOf(families, 'spate_job_phase', { phase: 'failed' })).toBe(0);
      expect(valueOf(families, 'spate_job_parallelism', {})).toBe(2);
      for (const instance of ['0', '1']) {
        expect(valueOf(families, 'spate_step_records_out_total', { step: 'numbers', instance, kind: 'source' })).toBeGreaterThan(0);
        expect(valueOf(families, 'spate_step_backpressure_seconds_total', { step: 'counts', instance })).toBeGreaterThanOrEqual(0);
        expect(valueOf(families, 'spate_step_watermark_seconds', { step: 'numbers', instance })).toBeGreaterThan(1_700_000_000);
      }
      const dead = families.get('spate_step_dead_letters_total')!.samples.filter((s) => s.labels['step'] === 'check');
      expect(dead.reduce((n, s) => n + s.value, 0)).toBeGreaterThan(0);
      expect(families.get('spate_checkpoint_last_duration_seconds')!.samples.map((s) => s.labels['phase'])).toEqual(['align', 'write', 'commit']);
      expect(valueOf(families, 'spate_checkpoint_last_id', {})).toBeGreaterThanOrEqual(1);
      expect(valueOf(families, 'spate_view_keys', { view: 'counts' })).toBe(3);
      for (const f of families.values()) expect(f.help!.length, f.name).toBeGreaterThan(0);

      // An independent parser reads the same families and values.
      const parsed = parsePrometheusTextFormat(text);
      expect(parsed.map((f) => f.name).sort()).toEqual([...families.keys()].sort());
      for (const f of parsed) {
        const mine = families.get(f.name)!;
        expect(f.type.toLowerCase()).toBe(mine.type);
        expect(f.metrics.map((m) => Number(m.value))).toEqual(mine.samples.map((s) => s.value));
      }
    } finally {
      await dashboard.close();
      await running.stop();
    }
  });

  it('escapes label values and help text, and leaves out watermarks that are not finite', () => {
    const status: JobStatus = {
      phase: 'running',
      startedAt: 1_700_000_000_000,
      restoredFrom: null,
      openMs: 5,
      parallelism: 1,
      steps: [],
      instances: [
        { step: 'we"ird\\step\nid', kind: 'map', instance: 0, recordsIn: 5, recordsOut: 4, deadLetters: 1, lateRecords: 0, lateDropped: 0, duplicatesDropped: 0, keysBeyondMemoryBound: 0, watermark: -Infinity, idle: false, ended: false, checkpointPauseMs: 0, backpressureMs: 1500 },
        { step: 'sink', kind: 'sink', instance: 0, recordsIn: 4, recordsOut: 0, deadLetters: 0, lateRecords: 0, lateDropped: 0, duplicatesDropped: 0, keysBeyondMemoryBound: 0, watermark: Infinity, idle: true, ended: true, checkpointPauseMs: 0, backpressureMs: 0 },
        // Dead letters reported off the data path, from two threads: one series.
        { step: 'sink', kind: 'sink', instance: -1, recordsIn: 0, recordsOut: 0, deadLetters: 2, lateRecords: 0, lateDropped: 0, duplicatesDropped: 0, keysBeyondMemoryBound: 0, watermark: Infinity, idle: true, ended: true, checkpointPauseMs: 0, backpressureMs: 0 },
        { step: 'sink', kind: 'sink', instance: -1, recordsIn: 0, recordsOut: 0, deadLetters: 3, lateRecords: 0, lateDropped: 0, duplicatesDropped: 0, keysBeyondMemoryBound: 0, watermark: Infinity, idle: true, ended: true, checkpointPauseMs: 0, backpressureMs: 0 },
      ],
      checkpoints: [],
      deadLetters: [],
    };
    const text = prometheusText(status, { checkpointTotals: { completed: 0, failed: 0 }, views: [{ name: 'v', size: null }] });
    const families = parseExposition(text);
    expect(valueOf(families, 'spate_step_records_in_total', { step: 'we"ird\\step\nid' })).toBe(5);
    expect(valueOf(families, 'spate_step_backpressure_seconds_total', { step: 'we"ird\\step\nid' })).toBe(1.5);
    expect(families.get('spate_step_watermark_seconds')!.samples).toEqual([]);
    expect(valueOf(families, 'spate_step_dead_letters_total', { step: 'sink', instance: 'off-path' })).toBe(5);
    expect(families.has('spate_checkpoint_last_id')).toBe(false);
    expect(families.get('spate_view_keys')!.samples).toEqual([]);
    expect(parsePrometheusTextFormat(text).find((f) => f.name === 'spate_step_records_in_total')!.metrics[0]!.labels).toEqual({ step: 'we"ird\\step\nid', kind: 'map', instance: '0' });
  });
});

describe('cluster /metrics', () => {
  it("says, per task, whether it is restoring, running or stopping, with its restore's time and bytes, and counts moves", () => {
    const text = clusterPrometheusText(
      'j"1',
      [
        { task: 0, phase: 'running', since: 0, restoredFrom: 4, restoreMs: 250, stateBytes: 1_000, worker: 0 },
        { task: 3, phase: 'restoring', since: 0, restoredFrom: null, restoreMs: null, stateBytes: null, worker: 1 },
      ],
      { assigned: 3, revoked: 1, lost: 0, failed: 0 },
    );
    const families = parseExposition(text);
    const value = (name: string, labels: Record<string, string>): number | undefined =>
      families.get(name)?.samples.find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;
    expect(value('spate_cluster_tasks', { job: 'j"1' })).toBe(2);
    expect(value('spate_cluster_task_phase', { task: '3', phase: 'restoring' })).toBe(1);
    expect(value('spate_cluster_task_phase', { task: '3', phase: 'running' })).toBe(0);
    expect(value('spate_cluster_task_phase', { task: '0', phase: 'running' })).toBe(1);
    expect(value('spate_cluster_task_restore_seconds', { task: '0' })).toBe(0.25);
    expect(value('spate_cluster_task_restore_seconds', { task: '3' })).toBeUndefined(); // not restored yet
    expect(value('spate_cluster_task_restored_bytes', { task: '0' })).toBe(1_000);
    expect(value('spate_cluster_task_moves_total', { kind: 'revoked' })).toBe(1);
    expect(families.get('spate_cluster_task_moves_total')!.type).toBe('counter');
    expect(parsePrometheusTextFormat(text).length).toBe(families.size);
  });
});
