import type { CheckpointRecord } from '../checkpoint/coordinator.ts';
import { inputChannels } from '../plan/physical.ts';
import type { RecentDeadLetter } from '../runtime/dead-letters.ts';
import type { InstanceMetrics } from '../runtime/executor.ts';
import type { Job, JobPhase, JobStatus } from '../runtime/job.ts';
import { type WatermarkHold, watermarkHolds } from './watermark-holds.ts';

/** A step of the job with its counters, and rates over the last sampling interval. */
export interface StepRates {
  readonly step: string;
  readonly kind: string;
  readonly instances: number;
  readonly recordsIn: number;
  readonly recordsOut: number;
  readonly deadLetters: number;
  readonly lateRecords: number;
  readonly lateDropped: number;
  readonly duplicatesDropped: number;
  /** Records per second in and out, from counter deltas (0 until two samples exist). */
  readonly inRate: number;
  readonly outRate: number;
  readonly deadLetterRate: number;
  readonly lateRate: number;
  /** The lowest watermark of its instances. */
  readonly watermark: number;
  readonly idle: boolean;
  /**
   * Processing time minus the watermark (ms), when event time is epoch milliseconds (years
   * 2001–2100) and the watermark is finite; null otherwise.
   */
  readonly lagMs: number | null;
  /** The highest fraction of time one of its instances waited for downstream (0–1) over the interval. */
  readonly backpressure: number;
  /** How long its last checkpoint snapshot held it up (ms, the longest instance). */
  readonly checkpointPauseMs: number;
}

/** One input channel of an instance, with the upstream instance that feeds it. */
export interface ChannelState {
  readonly from: { readonly step: string; readonly instance: number };
  /** Which input of the step (joins and unions have several). */
  readonly input: number;
  readonly ship: string;
  readonly watermark: number;
  readonly idle: boolean;
  readonly ended: boolean;
}

/** A step instance with rates and its input channels named. */
export interface InstanceRates {
  readonly step: string;
  readonly kind: string;
  readonly instance: number;
  readonly recordsIn: number;
  readonly recordsOut: number;
  readonly inRate: number;
  readonly outRate: number;
  readonly watermark: number;
  readonly idle: boolean;
  readonly ended: boolean;
  readonly backpressureMs: number;
  /** Fraction of the interval it waited for downstream (0–1). */
  readonly backpressure: number;
  readonly inputs?: readonly ChannelState[];
  readonly splits?: InstanceMetrics['splits'];
  readonly nextEventTime?: number;
}

/** What the dashboard shows, as of `at`: {@link JobStatus} with rates, named channels and watermark holds. */
export interface DashboardStatus {
  /** When it was taken (epoch ms). */
  readonly at: number;
  readonly phase: JobPhase;
  readonly startedAt: number;
  readonly restoredFrom: JobStatus['restoredFrom'];
  readonly openMs: number | null;
  readonly parallelism: number;
  readonly error?: string;
  /** The interval the rates are computed over (ms); 0 before there are two samples. */
  readonly rateIntervalMs: number;
  readonly steps: readonly StepRates[];
  readonly instances: readonly InstanceRates[];
  /** Steps with something due that their watermark has not reached ("why hasn't my window fired?"). */
  readonly holds: readonly WatermarkHold[];
  /** The latest checkpoints, newest first. */
  readonly checkpoints: readonly CheckpointRecord[];
  /** Checkpoints that completed or failed during this run (counted as they finish). */
  readonly checkpointTotals: { readonly completed: number; readonly failed: number };
  /** The latest dead letters of every step, newest first. */
  readonly deadLetters: readonly RecentDeadLetter[];
  /** The job's views; `size` is null while the job opens or restores. */
  readonly views: ReadonlyArray<{ readonly name: string; readonly size: number | null }>;
}

interface Sample {
  readonly t: number;
  readonly steps: Map<string, { in: number; out: number; dead: number; late: number }>;
  readonly instances: Map<string, { in: number; out: number; bp: number }>;
}

/** Options of {@link StatusSampler}. */
export interface StatusSamplerOptions {
  /** Milliseconds between samples (default 1000). */
  readonly intervalMs?: number;
  /** Checkpoints listed in a status (default 30). */
  readonly checkpoints?: number;
}

const EPOCH_MIN = 978_307_200_000; // 2001-01-01
const EPOCH_MAX = 4_102_444_800_000; // 2100-01-01

/**
 * Samples a job's status (call `sample` at a fixed interval) and turns counters into rates: records per second
 * per step and instance, and backpressure as the fraction of time an instance waited for
 * downstream (the delta of its `backpressureMs` over the delta of time). Also counts checkpoints
 * as they complete or fail, for counters that survive the job's bounded history.
 *
 * `status()` answers at any time: rates are computed between now and the newest sample at least
 * most of an interval old, so a request between two ticks still sees a full interval.
 */
export class StatusSampler {
  readonly intervalMs: number;
  private readonly keepCheckpoints: number;
  private readonly samples: Sample[] = [];
  private completed = 0;
  private failed = 0;
  private lastCounted = 0;

  constructor(
    private readonly job: Job,
    options: StatusSamplerOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.keepCheckpoints = options.checkpoints ?? 30;
  }

  /** Takes a sample now. */
  sample(): JobStatus {
    const status = this.job.status();
    this.samples.push(toSample(performance.now(), status));
    // Five intervals are enough for any baseline `status` looks for.
    while (this.samples.length > 5) this.samples.shift();
    this.countCheckpoints(status.checkpoints);
    return status;
  }

  /** Checkpoint totals: counted once each, in id order, when they have finished. */
  private countCheckpoints(history: readonly CheckpointRecord[]): void {
    for (const c of history) {
      if (c.id <= this.lastCounted) continue;
      if (c.status === 'in-progress') break;
      if (c.status === 'completed') this.completed++;
      else this.failed++;
      this.lastCounted = c.id;
    }
  }

  get checkpointTotals(): { completed: number; failed: number } {
    return { completed: this.completed, failed: this.failed };
  }

  /** The job's status now, with rates over the last interval. */
  status(): DashboardStatus {
    const raw = this.job.status();
    this.countCheckpoints(raw.checkpoints);
    const now = performance.now();
    const at = Date.now();
    const current = toSample(now, raw);
    let base: Sample | undefined;
    for (let i = this.samples.length - 1; i >= 0; i--) {
      if (now - this.samples[i]!.t >= this.intervalMs * 0.8) {
        base = this.samples[i];
        break;
      }
    }
    base ??= this.samples[0];
    const dt = base === undefined ? 0 : now - base.t;
    const usable = base !== undefined && dt >= 50;
    const perSecond = (a: number, b: number | undefined): number => (usable && b !== undefined ? Math.max(0, ((a - b) * 1000) / dt) : 0);
    const fraction = (a: number, b: number | undefined): number => (usable && b !== undefined ? Math.min(1, Math.max(0, (a - b) / dt)) : 0);

    const instances: InstanceRates[] = [];
    const bpByStep = new Map<string, number>();
    for (const m of raw.instances) {
      if (m.instance < 0) continue;
      const key = `${m.step}#${m.instance}`;
      const prev = base?.instances.get(key);
      const bp = fraction(m.backpressureMs, prev?.bp);
      bpByStep.set(m.step, Math.max(bpByStep.get(m.step) ?? 0, bp));
      let inputs: ChannelState[] | undefined;
      if (m.inputs !== undefined) {
        const channels = inputChannels(this.job.plan, m.step, m.instance);
        inputs = m.inputs.map((c, i) => {
          const ch = channels[i];
          return {
            from: { step: ch?.step ?? '?', instance: ch?.instance ?? 0 },
            input: ch?.input ?? 0,
            ship: ch?.edge.ship ?? '?',
            watermark: c.watermark,
            idle: c.idle,
            ended: c.ended,
          };
        });
      }
      instances.push({
        step: m.step,
        kind: m.kind,
        instance: m.instance,
        recordsIn: m.recordsIn,
        recordsOut: m.recordsOut,
        inRate: perSecond(m.recordsIn, prev?.in),
        outRate: perSecond(m.recordsOut, prev?.out),
        watermark: m.watermark,
        idle: m.idle,
        ended: m.ended,
        backpressureMs: m.backpressureMs,
        backpressure: bp,
        ...(inputs === undefined ? {} : { inputs }),
        ...(m.splits === undefined ? {} : { splits: m.splits }),
        ...(m.nextEventTime === undefined ? {} : { nextEventTime: m.nextEventTime }),
      });
    }
    const steps: StepRates[] = raw.steps.map((s) => {
      const cur = current.steps.get(s.step)!;
      const prev = base?.steps.get(s.step);
      const finite = Number.isFinite(s.watermark);
      return {
        step: s.step,
        kind: s.kind,
        instances: s.instances,
        recordsIn: s.recordsIn,
        recordsOut: s.recordsOut,
        deadLetters: s.deadLetters,
        lateRecords: s.lateRecords,
        lateDropped: s.lateDropped,
        duplicatesDropped: s.duplicatesDropped,
        inRate: perSecond(cur.in, prev?.in),
        outRate: perSecond(cur.out, prev?.out),
        deadLetterRate: perSecond(cur.dead, prev?.dead),
        lateRate: perSecond(cur.late, prev?.late),
        watermark: s.watermark,
        idle: s.idle,
        lagMs: finite && s.watermark >= EPOCH_MIN && s.watermark < EPOCH_MAX ? at - s.watermark : null,
        backpressure: bpByStep.get(s.step) ?? 0,
        checkpointPauseMs: s.checkpointPauseMs,
      };
    });
    const views = this.job.viewNames().map((name) => ({ name, size: this.job.view(name)?.size ?? null }));
    return {
      at,
      phase: raw.phase,
      startedAt: raw.startedAt,
      restoredFrom: raw.restoredFrom,
      openMs: raw.openMs,
      parallelism: raw.parallelism,
      ...(raw.error === undefined ? {} : { error: raw.error }),
      rateIntervalMs: usable ? Math.round(dt) : 0,
      steps,
      instances,
      holds: raw.phase === 'running' ? watermarkHolds(this.job.plan, raw.instances) : [],
      checkpoints: raw.checkpoints.slice(-this.keepCheckpoints).reverse(),
      checkpointTotals: this.checkpointTotals,
      deadLetters: raw.deadLetters.slice().reverse(),
      views,
    };
  }
}

function toSample(t: number, status: JobStatus): Sample {
  const steps = new Map<string, { in: number; out: number; dead: number; late: number }>();
  for (const s of status.steps) steps.set(s.step, { in: s.recordsIn, out: s.recordsOut, dead: s.deadLetters, late: s.lateRecords });
  const instances = new Map<string, { in: number; out: number; bp: number }>();
  for (const m of status.instances) if (m.instance >= 0) instances.set(`${m.step}#${m.instance}`, { in: m.recordsIn, out: m.recordsOut, bp: m.backpressureMs });
  return { t, steps, instances };
}
