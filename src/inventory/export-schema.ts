// Writes the inventory's JSON Schema for editors (yaml-language-server). Run by `npm run build`.
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { inventoryJsonSchema } from './schema.js'

const out = process.argv[2] ?? 'schema/inventory.schema.json'
mkdirSync(dirname(out), { recursive: true })
const schema = { $id: 'https://labctl.local/inventory.schema.json', title: 'labctl lab inventory', ...(inventoryJsonSchema() as object) }
writeFileSync(out, `${JSON.stringify(schema, null, 2)}\n`)
