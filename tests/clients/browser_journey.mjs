// Drives headless Chromium (Debian's, /usr/bin/chromium) with playwright-core: opens the test
// page that bundles the Segment browser SDK and runs one journey in it.
// Input: a JSON object on argv[2] ({page, userDataDir, ...journey}). Prints the outcomes.
import { chromium } from 'playwright-core'

const j = JSON.parse(process.argv[2])
const context = await chromium.launchPersistentContext(j.userDataDir, {
  executablePath: process.env.LOOM_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
})
try {
  const page = await context.newPage()
  page.on('console', (m) => console.error(`page ${m.type()}: ${m.text()}`))
  page.on('requestfailed', (r) => console.error(`request failed: ${r.url()} ${r.failure()?.errorText}`))
  await page.goto(j.page)
  const outcomes = await page.evaluate((journey) => window.loomJourney(journey), j)
  console.log(JSON.stringify(outcomes))
  process.exitCode = outcomes.every((o) => o === 'ok') ? 0 : 1
} finally {
  await context.close()
}
