import { inputChannels, type PhysicalPlan } from '../plan/physical.ts';
import type { InstanceMetrics } from '../runtime/executor.ts';

/** One step instance on the way from a waiting step up to what holds its watermark back. */
export interface HoldHop {
  readonly step: string;
  readonly instance: number;
  readonly kind: string;
  readonly watermark: number;
}

/** Where a watermark is held back, at the end of the path upstream. */
export interface HoldOrigin extends HoldHop {
  /** The source split that holds it (sources that report splits). */
  readonly split?: string;
  /**
   * `behind`: it has data, its watermark is the lowest; `no data yet`: it has not seen a record
   * (watermark −∞); `idle`: nothing arrives and every input is idle; `unknown`: no metrics for it.
   */
  readonly state: 'behind' | 'no data yet' | 'idle' | 'unknown';
}

/**
 * Why a step has not fired yet: it has something due at `nextEventTime` (a window's end, an
 * event-time timer) but its watermark is lower. The input channel with the lowest watermark holds
 * it back; following that channel upstream, instance by instance, leads to the source split (or
 * the idle or empty input) that holds the whole path back.
 */
export interface WatermarkHold {
  readonly step: string;
  readonly instance: number;
  readonly kind: string;
  readonly watermark: number;
  readonly nextEventTime: number;
  /** `nextEventTime − watermark`: how far the watermark still has to go (ms of event time). */
  readonly waitingFor: number;
  /**
   * `input`: an input channel's watermark is behind; `no data yet`: an input has seen no record;
   * `idle`: every input is idle — nothing arrives to move the watermark.
   */
  readonly reason: 'input' | 'no data yet' | 'idle';
  /** The input channel that holds the watermark back (absent when every input is idle). */
  readonly channel?: {
    /** Channel number, in the order of `inputChannels(plan, step, instance)`. */
    readonly index: number;
    /** Which input of the step (0 unless it has several, as a join or a union). */
    readonly input: number;
    /** The upstream step and instance that feed it. */
    readonly step: string;
    readonly instance: number;
    readonly watermark: number;
    /** `nextEventTime − channel watermark`. */
    readonly behind: number;
  };
  /** The instances between the channel's upstream and the origin, nearest first (origin included last). */
  readonly path: readonly HoldHop[];
  readonly origin: HoldOrigin;
  /** The same in one sentence. */
  readonly summary: string;
}

type Lowest = { kind: 'channel'; index: number } | { kind: 'idle' } | { kind: 'ended' };

/** The open, non-idle input channel with the lowest watermark (ties: the first). */
function lowestInput(m: InstanceMetrics): Lowest {
  const inputs = m.inputs ?? [];
  let best = -1;
  let open = 0;
  for (let i = 0; i < inputs.length; i++) {
    const c = inputs[i]!;
    if (c.ended) continue;
    open++;
    if (c.idle) continue;
    if (best < 0 || c.watermark < inputs[best]!.watermark) best = i;
  }
  if (best >= 0) return { kind: 'channel', index: best };
  return open === 0 ? { kind: 'ended' } : { kind: 'idle' };
}

/**
 * For every operator instance with something due (a finite `nextEventTime` above its watermark),
 * which input holds its watermark back, by how much, and — following the lowest channel upstream
 * — which source split (or idle or empty input) is at the origin. Instances whose inputs have all
 * ended are left out (their watermark is final).
 *
 * @example
 * for (const h of watermarkHolds(job.plan, job.status().instances)) console.log(h.summary);
 */
export function watermarkHolds(plan: PhysicalPlan, instances: readonly InstanceMetrics[]): WatermarkHold[] {
  const byInstance = new Map<string, InstanceMetrics>();
  for (const m of instances) if (m.instance >= 0) byInstance.set(`${m.step}#${m.instance}`, m);
  const out: WatermarkHold[] = [];
  for (const m of instances) {
    if (m.instance < 0 || m.inputs === undefined || m.ended) continue;
    const due = m.nextEventTime ?? Infinity;
    if (!Number.isFinite(due) || due <= m.watermark) continue;
    const lowest = lowestInput(m);
    if (lowest.kind === 'ended') continue;
    const base = { step: m.step, instance: m.instance, kind: m.kind, watermark: m.watermark, nextEventTime: due, waitingFor: due - m.watermark };
    if (lowest.kind === 'idle') {
      const origin: HoldOrigin = { step: m.step, instance: m.instance, kind: m.kind, watermark: m.watermark, state: 'idle' };
      out.push({ ...base, reason: 'idle', path: [], origin, summary: describe(base, undefined, [], origin) });
      continue;
    }
    const channels = inputChannels(plan, m.step, m.instance);
    const ch = channels[lowest.index];
    const cw = m.inputs[lowest.index]!.watermark;
    const channel = {
      index: lowest.index,
      input: ch?.input ?? 0,
      step: ch?.step ?? '?',
      instance: ch?.instance ?? 0,
      watermark: cw,
      behind: due - cw,
    };
    const { path, origin } = follow(plan, byInstance, channel.step, channel.instance);
    const reason = cw === -Infinity ? 'no data yet' : 'input';
    out.push({ ...base, reason, channel, path, origin, summary: describe(base, channel, path, origin) });
  }
  return out;
}

/** Walks upstream from an instance along its lowest input channel to the origin of the hold. */
function follow(plan: PhysicalPlan, byInstance: ReadonlyMap<string, InstanceMetrics>, step: string, instance: number): { path: HoldHop[]; origin: HoldOrigin } {
  const path: HoldHop[] = [];
  // Plans are acyclic; the bound only guards against metrics that do not match the plan.
  for (let depth = 0; depth < 1000; depth++) {
    const m = byInstance.get(`${step}#${instance}`);
    if (m === undefined) {
      const origin: HoldOrigin = { step, instance, kind: '?', watermark: -Infinity, state: 'unknown' };
      path.push(origin);
      return { path, origin };
    }
    const hop: HoldHop = { step, instance, kind: m.kind, watermark: m.watermark };
    if (m.splits !== undefined) {
      const live = m.splits.filter((s) => !s.finished);
      const active = live.filter((s) => !s.idle);
      let origin: HoldOrigin;
      if (active.length > 0) {
        const split = active.reduce((a, b) => (b.watermark < a.watermark ? b : a));
        // A source that does not track splits reports one track without an id.
        origin = { ...hop, ...(split.id === '' ? {} : { split: split.id }), watermark: split.watermark, state: split.watermark === -Infinity ? 'no data yet' : 'behind' };
      } else if (live.length > 0 || m.idle) {
        origin = { ...hop, state: 'idle' };
      } else {
        origin = { ...hop, state: m.watermark === -Infinity ? 'no data yet' : 'behind' };
      }
      path.push(origin);
      return { path, origin };
    }
    const lowest = lowestInput(m);
    if (lowest.kind !== 'channel') {
      const origin: HoldOrigin = { ...hop, state: lowest.kind === 'idle' ? 'idle' : 'behind' };
      path.push(origin);
      return { path, origin };
    }
    path.push(hop);
    const ch = inputChannels(plan, step, instance)[lowest.index];
    if (ch === undefined) {
      const origin: HoldOrigin = { ...hop, state: 'unknown' };
      path[path.length - 1] = origin;
      return { path, origin };
    }
    step = ch.step;
    instance = ch.instance;
  }
  const origin: HoldOrigin = { step, instance, kind: '?', watermark: -Infinity, state: 'unknown' };
  return { path: [...path, origin], origin };
}

function describe(
  base: { step: string; instance: number; watermark: number; nextEventTime: number; waitingFor: number },
  channel: WatermarkHold['channel'],
  path: readonly HoldHop[],
  origin: HoldOrigin,
): string {
  const head = `'${base.step}' #${base.instance} fires at ${formatEventTime(base.nextEventTime)}; its watermark is ${formatEventTime(base.watermark)} (${formatSpan(base.waitingFor)} to go)`;
  if (channel === undefined) return `${head}: every input is idle — nothing arrives to move the watermark`;
  const held =
    channel.watermark === -Infinity
      ? `input from '${channel.step}' #${channel.instance} has no data yet`
      : `input from '${channel.step}' #${channel.instance} holds it back at ${formatEventTime(channel.watermark)} (${formatSpan(channel.behind)} behind)`;
  const at = origin.split === undefined ? `'${origin.step}' #${origin.instance}` : `split '${origin.split}' of '${origin.step}' #${origin.instance}`;
  const why =
    origin.state === 'no data yet'
      ? `${at}, which has no data yet`
      : origin.state === 'idle'
        ? `${at}, which is idle`
        : origin.state === 'unknown'
          ? `${at} (no metrics)`
          : `${at} at ${formatEventTime(origin.watermark)}`;
  const via = path.length > 1 ? ` via ${path.slice(0, -1).map((h) => `'${h.step}' #${h.instance}`).join(' ← ')}` : '';
  return `${head}: ${held}; origin: ${why}${via}`;
}

/** An event time: an ISO date for epoch milliseconds (years 2001–2100), else the number; ±∞ as words. */
export function formatEventTime(t: number): string {
  if (t === -Infinity) return '−∞ (no data)';
  if (t === Infinity) return '+∞ (end)';
  if (t >= 978_307_200_000 && t < 4_102_444_800_000) return new Date(t).toISOString();
  return String(t);
}

/** A span of event time (ms). */
export function formatSpan(ms: number): string {
  if (!Number.isFinite(ms)) return '∞';
  if (Math.abs(ms) < 1000) return `${Math.round(ms)} ms`;
  if (Math.abs(ms) < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (Math.abs(ms) < 7_200_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
