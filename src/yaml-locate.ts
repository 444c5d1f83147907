// Where in a YAML file a schema problem is: shared by the inventory and runbook parsers, so both
// report FILE:LINE:COLUMN: KEY the same way.
import { UsageError } from './errors.js'
import { isMap, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode, type Pair, type YAMLMap } from 'yaml'

/** At most this many problems of a file are listed; the rest are counted. */
export const MAX_LISTED_PROBLEMS = 20

/** The detail lines under a file's first problem: problems 2..20, then "… and M more problems". */
export function problemDetails(lines: readonly string[], total = lines.length): string[] {
  const out = lines.slice(1, MAX_LISTED_PROBLEMS)
  const rest = total - MAX_LISTED_PROBLEMS
  if (rest > 0) out.push(`… and ${rest} more problem${rest > 1 ? 's' : ''}`)
  return out
}

/** `a.b[2].c` for a schema path. */
export function keyPath(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '')
}

/** The line and column of the YAML node closest to a schema path (the deepest one that exists). */
export function locate(doc: Document, path: ReadonlyArray<PropertyKey>, lc: LineCounter, extraKey?: string, atValue = false): { line: number; column: number } {
  return createLocator(doc, lc)(path, extraKey, atValue)
}

/**
 * A locator for one document: like `locate`, but each mapping's keys are indexed on first use, so
 * reporting N problems in a mapping of N keys is linear, not quadratic.
 */
export function createLocator(doc: Document, lc: LineCounter): (path: ReadonlyArray<PropertyKey>, extraKey?: string, atValue?: boolean) => { line: number; column: number } {
  const index = new WeakMap<object, Map<unknown, Pair>>()
  const pairOf = (map: YAMLMap, step: PropertyKey): Pair | undefined => {
    let m = index.get(map)
    if (!m) {
      m = new Map()
      for (const p of map.items) {
        const k = (p.key as { value?: unknown } | null)?.value
        if (!m.has(k)) m.set(k, p)
      }
      index.set(map, m)
    }
    return m.get(step)
  }
  return (path, extraKey, atValue = false) => {
    let node: unknown = doc.contents
    let offset = (doc.contents as YamlNode | null)?.range?.[0] ?? 0
    const steps = extraKey === undefined ? [...path] : [...path, extraKey]
    let found = 0
    for (const step of steps) {
      if (isMap(node)) {
        const pair = pairOf(node, step)
        if (!pair) break
        offset = (pair.key as YamlNode).range?.[0] ?? offset
        node = pair.value
      } else if (isSeq(node) && typeof step === 'number') {
        const item = node.items[step] as YamlNode | undefined
        if (!item) break
        offset = item.range?.[0] ?? offset
        node = item
      } else break
      found += 1
    }
    // A wrong value is shown where the value is (when the whole path exists and it is a scalar).
    if (atValue && found === steps.length && isScalar(node) && node.range) offset = node.range[0]
    const pos = lc.linePos(offset)
    return { line: pos.line, column: pos.col }
  }
}

/**
 * Duplicate keys in every mapping of the document, in linear time (yaml's own `uniqueKeys` check
 * compares each key with all before it: minutes for a large file). Parse with `uniqueKeys: false`.
 */
export function duplicateKeys(doc: Document, max = Infinity): Array<{ offset: number; key: string }> {
  const out: Array<{ offset: number; key: string }> = []
  const stack: unknown[] = [doc.contents]
  const seenNodes = new Set<unknown>()
  while (stack.length > 0 && out.length < max) {
    const node = stack.pop()
    if (!node || typeof node !== 'object' || seenNodes.has(node)) continue
    seenNodes.add(node)
    if (isMap(node)) {
      const keys = new Set<unknown>()
      for (const p of node.items) {
        const k = isScalar(p.key) ? p.key.value : p.key
        if (keys.has(k)) out.push({ offset: (p.key as YamlNode | null)?.range?.[0] ?? 0, key: String(k) })
        keys.add(k)
        stack.push(p.value)
      }
    } else if (isSeq(node)) for (const item of node.items) stack.push(item)
  }
  return out.sort((a, b) => a.offset - b.offset)
}

/** A YAML document whose aliases expand to too much (an "alias bomb"). */
export class YamlAliasBombError extends UsageError {
  constructor() {
    super('YAML aliases expand to too many nodes (an alias bomb?): labctl refuses the file', { code: 'YAML_ALIAS_BOMB', suggestion: 'write the values out instead of repeating YAML aliases (*name)' })
    this.name = 'YamlAliasBombError'
  }
}

/** The document as plain data, refusing alias bombs (at most 100 alias expansions, yaml's maxAliasCount). */
export function toJsBounded(doc: Document): unknown {
  try {
    return doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    if (err instanceof ReferenceError && /alias/i.test(err.message)) throw new YamlAliasBombError()
    throw err
  }
}
