// The page script of the browser test: the unmodified Segment browser SDK from npm
// (@segment/analytics-next), bundled by esbuild. It loads its settings from `loom gateway`
// (cdnURL = the gateway), so every event goes there.
import { AnalyticsBrowser } from '@segment/analytics-next'

window.loomJourney = async (j) => {
  const [analytics] = await AnalyticsBrowser.load(
    { writeKey: j.writeKey, cdnURL: j.gateway },
    { disableClientPersistence: true },
  )
  analytics.setAnonymousId(j.anonymousId)
  const outcomes = []
  const delivered = async (call) => {
    const ctx = await call
    const failed = ctx.failedDelivery()
    outcomes.push(failed ? `failed: ${failed.reason}` : 'ok')
  }
  await delivered(analytics.page('catalog', 'Shoes', { path: '/shoes' }))
  await delivered(analytics.identify(j.userId, { email: j.email, firstName: 'Browser' }))
  await delivered(analytics.track('Order Completed', j.order))
  await delivered(analytics.alias(j.userId, j.previousId))
  return outcomes
}
