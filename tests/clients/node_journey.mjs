// One person's journey through the unmodified @segment/analytics-node SDK, pointed at
// `loom gateway` (tests/e2e/test_gateway_sdks_e2e.py runs it with the machine's Node).
// Input: a JSON object on argv[2]. Exit 0 once every event was delivered, else 1.
import { Analytics } from '@segment/analytics-node'

const j = JSON.parse(process.argv[2])
const analytics = new Analytics({
  writeKey: j.writeKey,
  host: j.host,
  flushAt: 10,
  flushInterval: 200,
  maxRetries: 3,
})
const failures = []
analytics.on('error', (err) => failures.push(String(err.reason ?? err.code ?? err)))
const statuses = []
analytics.on('http_response', (r) => statuses.push(r.status))

analytics.page({ anonymousId: j.anonymousId, name: 'Shoes', category: 'catalog',
  properties: { path: '/shoes', url: 'https://shop.example/shoes' } })
analytics.identify({ userId: j.userId, anonymousId: j.anonymousId,
  traits: { email: j.email, firstName: 'Node', lastName: 'Journey' } })
analytics.track({ userId: j.userId, event: 'Order Completed', properties: j.order })
analytics.alias({ userId: j.userId, previousId: j.previousId })
await analytics.closeAndFlush({ timeout: 30000 })
console.log(JSON.stringify({ statuses, failures }))
process.exit(failures.length === 0 && statuses.length > 0 && statuses.every((s) => s === 200) ? 0 : 1)
