import { LabctlCommand, describe } from '../_base.js'

export type ConfigValidateResult = { path: string; valid: true; lab: string; hosts: string[] }

export default class ConfigValidate extends LabctlCommand<ConfigValidateResult> {
  static override summary = 'Validate the lab inventory against its schema.'
  static override description = describe(
    'Parses the inventory and checks every key. A problem is reported as FILE:LINE:COLUMN: KEY: what is wrong, with exit code 2.',
  )
  static override examples = ['<%= config.bin %> config validate --config examples/comptech-lab.yaml']

  async run(): Promise<ConfigValidateResult> {
    const { flags } = await this.parse(ConfigValidate)
    const loaded = this.loadInventory(flags)
    const hosts = loaded.inventory.trivy.hosts.map((h) => h.name)
    this.log(`${loaded.path}: valid (lab ${loaded.inventory.name}, ${hosts.length} scanner host${hosts.length === 1 ? '' : 's'}: ${hosts.join(', ')})`)
    return { path: loaded.path, valid: true, lab: loaded.inventory.name, hosts }
  }
}
