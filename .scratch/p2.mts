import { PlatformaticKafkaClient } from '/work/wt-kafka/src/connectors/kafka/client.ts';
const c = new PlatformaticKafkaClient({});
const id = 'probe-list-' + Date.now();
const pid = await c.initProducer(id, 60000);
await c.addPartitionsToTxn(id, pid, 'probe-1796039478568', [0]);
console.log(await c.listTransactions());
await c.endTxn(id, pid, false);
await c.close();
