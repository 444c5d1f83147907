import { LabctlCommand, describe } from '../_base.js'
import { redactInventory, summarizeInventory, type ConfigShowResult } from '../../src/inventory/show.js'

export default class ConfigShow extends LabctlCommand<ConfigShowResult> {
  static override summary = 'Show the lab inventory as labctl understands it (defaults applied, secrets never shown).'
  static override description = describe('Reads the inventory chosen by --config, LABCTL_CONFIG, --lab or the XDG default and prints it.')
  static override examples = ['<%= config.bin %> config show --lab sandbox', '<%= config.bin %> config show --config lab.yaml --json']

  async run(): Promise<ConfigShowResult> {
    const { flags } = await this.parse(ConfigShow)
    const loaded = this.loadInventory(flags)
    const inventory = redactInventory(loaded.inventory)
    this.log(`inventory:     ${loaded.path}`)
    for (const line of summarizeInventory(inventory)) this.log(line)
    return { path: loaded.path, inventory }
  }
}
