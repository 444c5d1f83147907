// Where in a YAML file a schema problem is: shared by the inventory and runbook parsers, so both
// report FILE:LINE:COLUMN: KEY the same way.
import { isMap, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode } from 'yaml'

/** `a.b[2].c` for a schema path. */
export function keyPath(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '')
}

/** The line and column of the YAML node closest to a schema path (the deepest one that exists). */
export function locate(doc: Document, path: ReadonlyArray<PropertyKey>, lc: LineCounter, extraKey?: string, atValue = false): { line: number; column: number } {
  let node: unknown = doc.contents
  let offset = (doc.contents as YamlNode | null)?.range?.[0] ?? 0
  const steps = extraKey === undefined ? [...path] : [...path, extraKey]
  let found = 0
  for (const step of steps) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === step)
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

