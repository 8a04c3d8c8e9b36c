import t from 'tap';
import { loadConfig, redactUrl } from '../src/config.js';

t.test('flags beat the environment, which beats defaults', async (t) => {
  const c = loadConfig({ topic: 'a' }, { FRAUD_SQL_TOPIC: 'b', FRAUD_SQL_GROUP: 'g' });
  t.equal(c.topic, 'a');
  t.equal(c.groupId, 'g');
  t.equal(c.latenessMs, 5000);
  t.ok(Object.isFrozen(c));
});

t.test('every problem is listed at once', async (t) => {
  try {
    loadConfig({ batchMaxSize: '0', brokers: 'nohost' }, { FRAUD_SQL_TIME_ZONE: 'Mars/Base', FRAUD_SQL_CONSOLE: 'maybe' });
    t.fail('should throw');
  } catch (err) {
    const m = (err as Error).message;
    t.match(m, /batch-max-size: 0 is below the minimum 1/);
    t.match(m, /"nohost" is not host:port/);
    t.match(m, /Mars\/Base/);
    t.match(m, /FRAUD_SQL_CONSOLE: "maybe" is not a boolean/);
  }
});

t.test('passwords never appear in messages', async (t) => {
  t.equal(redactUrl('postgres://u:secret@h:5432/db'), 'postgres://u:***@h:5432/db');
});
