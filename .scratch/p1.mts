import { Admin } from '@platformatic/kafka';
import { PlatformaticKafkaClient } from '/work/wt-kafka/src/connectors/kafka/client.ts';
import { CommittedRecords } from '/work/wt-kafka/src/connectors/kafka/records.ts';
const topic = 'probe-' + Date.now();
const admin = new Admin({ clientId: 'probe', bootstrapBrokers: ['127.0.0.1:9092'] });
await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 });
const c = new PlatformaticKafkaClient({});
console.log('partitions', await c.partitions(topic), await c.leaders(topic));
const tid = topic + '-tx';
let t0 = Date.now();
const pid = await c.initProducer(tid, 60000);
console.log('pid', pid, Date.now() - t0);
const rec = (s: string) => ({ key: undefined, value: Buffer.from(s), headers: undefined, timestamp: BigInt(Date.now()) });
let seq = 0;
async function txn(values: string[], commit: boolean) {
  await c.addPartitionsToTxn(tid, pid, topic, [0]);
  const codes = await c.produce(1, pid, tid, [{ topic, partition: 0, records: values.map(rec), firstSequence: seq }], 30000);
  seq += values.length;
  console.log('codes', codes);
  await c.endTxn(tid, pid, commit);
}
await txn(['a1', 'a2'], false);
await txn(['c1'], true);
await txn(['a3'], false);
await txn(['c2', 'c3'], true);
// retry commit of last txn (already committed)
try { await c.endTxn(tid, pid, true); console.log('re-commit ok'); } catch (e) { console.log('re-commit err', (e as Error).message); }
const idem = await c.initProducer(null, 60000);
console.log('idem', idem);
console.log(await c.produce(1, idem, null, [{ topic, partition: 1, records: [rec('x')], firstSequence: 0 }], 30000));
console.log('offsets', await c.listOffsets(topic, [0, 1], 'earliest'), await c.listOffsets(topic, [0, 1], 'latest'));
for (const from of [0, 2, 3, 5, 6]) {
  const f = await c.fetch(1, [{ topic, partition: 0, offset: from }], { maxWaitMs: 100, maxBytes: 1 << 20, partitionMaxBytes: 1 << 20 });
  const p = f[0]!;
  const cur = new CommittedRecords(p.batches, p.abortedTransactions, from);
  const out: string[] = [];
  while (cur.next()) out.push(`${cur.offset}:${cur.record!.value!.toString()}`);
  console.log(from, 'hw', p.highWatermark, 'lso', p.lastStableOffset, 'aborted', p.abortedTransactions, out, 'pos', cur.position);
}
const f = await c.fetch(1, [{ topic, partition: 0, offset: 100 }], { maxWaitMs: 100, maxBytes: 1 << 20, partitionMaxBytes: 1 << 20 });
console.log('oor', f[0]!.errorCode);
await c.commitOffsets('probe-group', [{ topic, partition: 0, offset: 3 }]);
console.log('listTx', (await c.listTransactions()).filter(t => t.transactionalId.startsWith('probe')));
await c.close(); await admin.close();
