// oclif's command_not_found hook: an unknown command gets the closest known one as a suggestion, on a
// terminal or not (CI logs and scripts deserve the hint too), and exit code 127.
import type { Hook } from '@oclif/core'
import { closest, distance } from 'fastest-levenshtein'

const hook: Hook.CommandNotFound = async function (opts) {
  const ids = opts.config.commands.filter((c) => !c.hidden).map((c) => c.id)
  const typed = opts.id.replaceAll(':', ' ')
  const best = ids.length ? closest(opts.id, ids) : undefined
  process.stderr.write(`labctl: error: "${typed}" is not a labctl command\n`)
  if (best && distance(opts.id, best) <= Math.max(3, Math.floor(opts.id.length / 3))) {
    process.stderr.write(`  did you mean: labctl ${best.replaceAll(':', ' ')}\n`)
  }
  process.stderr.write(`  next: run \`labctl help\` for the list of commands\n`)
  process.exit(127)
}

export default hook
