import { randomUUID } from 'node:crypto';
import { describeKafkaError, type KafkaClient, KafkaErrors } from '../connectors/kafka/client.ts';

/** What a member does with the partitions the group gives it and takes away. */
export interface MembershipListener {
  /** These partitions are this member's now: start their tasks. */
  assigned(partitions: readonly number[]): void;
  /**
   * The group moves these partitions to another member: stop their tasks (a final checkpoint is
   * welcome) and resolve; the group hands them on only after that.
   */
  revoked(partitions: readonly number[]): Promise<void>;
  /**
   * This member lost these partitions without handing them over (its session expired, or it was
   * fenced): another member may run them already, so stop at once, without committing anything.
   */
  lost(partitions: readonly number[]): Promise<void>;
}

/** Options of {@link GroupMembership}. */
export interface GroupMembershipOptions {
  readonly groupId: string;
  /** The topic whose partitions the members divide. */
  readonly topic: string;
  /**
   * How long a member may take to give up a revoked partition before the coordinator fences it
   * (default 60 000 ms).
   */
  readonly rebalanceTimeoutMs?: number;
  /**
   * How long without an answer from the coordinator before this member presumes its session
   * expired and gives up every partition as lost (default 6 000 ms; keep it at the broker's
   * `group.consumer.session.timeout.ms` or below).
   */
  readonly sessionTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

/**
 * Membership of a consumer group with the protocol of KIP-848 (Kafka 4): the coordinator computes
 * the assignment and changes it incrementally, so a member joining or leaving moves only the
 * partitions that change hands — cooperative rebalancing, no stop of the whole group. A
 * partition is given to its new owner only after the old one released it (or its session
 * expired): the heartbeat that reports it gone follows `revoked`.
 *
 * The member beats every `heartbeatIntervalMs` (the coordinator's), reporting what it owns. A
 * revocation runs in the background while heartbeats go on, so stopping a task (its final
 * checkpoint) does not cost the session. Coordinator errors and an unreachable broker are retried;
 * after `sessionTimeoutMs` without an answer, or when the coordinator fences the member, every
 * partition is `lost` and the member joins again.
 */
export class GroupMembership {
  private readonly memberId = randomUUID();
  private epoch = 0;
  private topicId: string | null = null;
  /** Partitions owned, revoking ones included (they are owned until released). */
  private readonly owned = new Set<number>();
  private readonly revoking = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private interval = 1_000;
  private beating = false;
  private again = false;
  private lastAnswer = Date.now();
  private closed = false;
  private joined = false;
  private unreachable = false;
  private readonly rebalanceTimeoutMs: number;
  private readonly sessionTimeoutMs: number;
  private readonly log: (line: string) => void;

  constructor(
    private readonly client: KafkaClient,
    private readonly options: GroupMembershipOptions,
    private readonly listener: MembershipListener,
  ) {
    this.rebalanceTimeoutMs = options.rebalanceTimeoutMs ?? 60_000;
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 6_000;
    this.log = options.log ?? (() => undefined);
  }

  /** Partitions this member owns now. */
  get partitions(): readonly number[] {
    return [...this.owned].filter((p) => !this.revoking.has(p)).sort((a, b) => a - b);
  }

  /** Joins the group; partitions arrive through the listener. */
  start(): void {
    this.beat();
  }

  /**
   * Leaves the group: revokes every partition through the listener (their tasks stop with a final
   * checkpoint), then tells the coordinator, which hands them to the other members at once.
   */
  async leave(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const mine = [...this.owned].filter((p) => !this.revoking.has(p));
    await this.listener.revoked(mine);
    while (this.beating) await new Promise((r) => setTimeout(r, 10));
    if (!this.joined) return;
    try {
      await this.client.groupHeartbeat({ groupId: this.options.groupId, memberId: this.memberId, memberEpoch: -1, rebalanceTimeoutMs: this.rebalanceTimeoutMs, topics: null, owned: [] });
    } catch (error) {
      this.log(`spate: leaving consumer group ${this.options.groupId} failed (${describeKafkaError(error)}); the coordinator will expire the session`);
    }
  }

  /** Stops heartbeating without leaving (a crash, as far as the group can tell). */
  abandon(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.beat(), ms);
  }

  /** Beats now (or right after the heartbeat in flight). */
  private beat(): void {
    if (this.closed) return;
    if (this.beating) {
      this.again = true;
      return;
    }
    this.beating = true;
    this.once()
      .catch((error: unknown) => this.failed(error))
      .finally(() => {
        this.beating = false;
        if (this.again) {
          this.again = false;
          this.beat();
        }
      });
  }

  private async once(): Promise<void> {
    this.topicId ??= await this.client.topicId(this.options.topic);
    const owned = this.owned.size === 0 ? [] : [{ topicId: this.topicId, partitions: [...this.owned].sort((a, b) => a - b) }];
    const joining = this.epoch === 0;
    const r = await this.client.groupHeartbeat({
      groupId: this.options.groupId,
      memberId: this.memberId,
      memberEpoch: this.epoch,
      rebalanceTimeoutMs: this.rebalanceTimeoutMs,
      topics: joining ? [this.options.topic] : null,
      owned,
    });
    if (this.closed) return;
    this.lastAnswer = Date.now();
    if (this.unreachable) {
      this.unreachable = false;
      this.log(`spate: consumer group ${this.options.groupId}: the coordinator answers again`);
    }
    if (r.errorCode === KafkaErrors.FENCED_MEMBER_EPOCH || r.errorCode === KafkaErrors.UNKNOWN_MEMBER_ID) {
      this.log(`spate: consumer group ${this.options.groupId}: this member was fenced (Kafka error ${r.errorCode}); its partitions are lost, joining again`);
      await this.loseAll();
      this.schedule(0);
      return;
    }
    if (r.errorCode !== 0) throw Object.assign(new Error(`consumer group ${this.options.groupId}: heartbeat failed with Kafka error ${r.errorCode}${r.errorMessage === null ? '' : ` (${r.errorMessage})`}`), { code: r.errorCode });
    if (joining && !this.joined) this.log(`spate: joined consumer group ${this.options.groupId} as ${this.memberId}`);
    this.joined = true;
    this.epoch = r.memberEpoch;
    this.interval = r.heartbeatIntervalMs > 0 ? r.heartbeatIntervalMs : this.interval;
    if (r.assignment !== null) this.reconcile(r.assignment.filter((a) => a.topicId === this.topicId).flatMap((a) => a.partitions));
    this.schedule(this.interval);
  }

  /** Moves towards the target assignment: revocations in the background, new partitions at once. */
  private reconcile(target: readonly number[]): void {
    const want = new Set(target);
    const revoke = [...this.owned].filter((p) => !want.has(p) && !this.revoking.has(p));
    const assign = target.filter((p) => !this.owned.has(p));
    if (revoke.length > 0) {
      for (const p of revoke) this.revoking.add(p);
      this.listener
        .revoked(revoke)
        .catch((error: unknown) => this.log(`spate: consumer group ${this.options.groupId}: stopping partitions ${revoke.join(', ')} failed: ${(error as Error).message}`))
        .finally(() => {
          for (const p of revoke) {
            this.revoking.delete(p);
            this.owned.delete(p);
          }
          this.beat();
        });
    }
    if (assign.length > 0) {
      for (const p of assign) this.owned.add(p);
      this.listener.assigned(assign);
      this.schedule(0);
    }
  }

  private async loseAll(): Promise<void> {
    const all = [...this.owned];
    this.owned.clear();
    this.revoking.clear();
    this.epoch = 0;
    if (all.length > 0) await this.listener.lost(all);
  }

  private failed(error: unknown): void {
    if (this.closed) return;
    if (!this.unreachable) {
      this.unreachable = true;
      this.log(`spate: consumer group ${this.options.groupId}: heartbeat failed (${describeKafkaError(error)}); retrying`);
    }
    if (Date.now() - this.lastAnswer > this.sessionTimeoutMs && this.owned.size > 0) {
      this.log(`spate: consumer group ${this.options.groupId}: no answer for ${this.sessionTimeoutMs} ms; the session has expired, giving up partitions ${[...this.owned].join(', ')}`);
      void this.loseAll();
    }
    this.schedule(Math.min(this.interval, 500));
  }
}
