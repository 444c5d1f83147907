// The syntax of runbook patterns (see pattern.ts): parsed into a small tree whose leaves test one
// character code (case-insensitively). Refuses what would need backtracking to match, with its offset.

/** A pattern that cannot be used: `index` is the offset in the pattern where the problem is. */
export class PatternError extends Error {
  readonly index: number
  constructor(message: string, index: number) {
    super(message)
    this.name = 'PatternError'
    this.index = index
  }
}


/** Longest pattern source accepted. */
export const MAX_PATTERN_LENGTH = 1000
/** A repeat count above this is refused ({n,m}). */
export const MAX_REPEAT = 100

export type CharTest = (code: number) => boolean
export type AssertKind = 'bol' | 'eol' | 'word' | 'nonword'
export type Node =
  | { t: 'char'; test: CharTest }
  | { t: 'seq'; items: Node[] }
  | { t: 'alt'; items: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number }
  | { t: 'assert'; kind: AssertKind }


const isDigit: CharTest = (c) => c >= 48 && c <= 57
export const isWordCode = (c: number): boolean => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95
const isSpace: CharTest = (c) => c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff
const isLineEnd = (c: number): boolean => c === 10 || c === 13 || c === 0x2028 || c === 0x2029
const not = (f: CharTest): CharTest => (c) => !f(c)

const lower = (c: number): number => (c < 128 ? (c >= 65 && c <= 90 ? c + 32 : c) : String.fromCharCode(c).toLowerCase().charCodeAt(0))
const upper = (c: number): number => (c < 128 ? (c >= 97 && c <= 122 ? c - 32 : c) : String.fromCharCode(c).toUpperCase().charCodeAt(0))
/** Case-insensitive: a code matches when it, its lower or its upper case form does. */
const nocase = (f: CharTest): CharTest => (c) => f(c) || f(lower(c)) || f(upper(c))

export class Parser {
  private i = 0
  private readonly s: string
  constructor(source: string) {
    this.s = source
  }

  parse(): Node {
    const node = this.alt()
    if (this.i < this.s.length) throw new PatternError(`unmatched ")"`, this.i)
    return node
  }

  private peek(): string | undefined {
    return this.s[this.i]
  }

  private alt(): Node {
    const items = [this.seq()]
    while (this.peek() === '|') {
      this.i++
      items.push(this.seq())
    }
    return items.length === 1 ? items[0]! : { t: 'alt', items }
  }

  private seq(): Node {
    const items: Node[] = []
    for (;;) {
      const c = this.peek()
      if (c === undefined || c === '|' || c === ')') break
      const at = this.i
      const atom = this.atom()
      items.push(this.quantified(atom, at))
    }
    return items.length === 1 ? items[0]! : { t: 'seq', items }
  }

  private quantified(atom: Node, at: number): Node {
    const c = this.peek()
    let min: number
    let max: number
    const start = this.i
    if (c === '*') [min, max] = [0, Infinity]
    else if (c === '+') [min, max] = [1, Infinity]
    else if (c === '?') [min, max] = [0, 1]
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i))
      if (!m) return atom // a literal "{", as JavaScript reads it
      min = Number(m[1])
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3])
      if (max < min) throw new PatternError(`numbers out of order in {${m[1]}${m[2] ?? ''}}`, start)
      if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) throw new PatternError(`repeat count above ${MAX_REPEAT}`, start)
      this.i += m[0].length - 1
    } else return atom
    this.i++
    if (this.peek() === '?') this.i++ // lazy: the same yes/no answer
    const next = this.peek()
    if (next === '*' || next === '+' || next === '?' || (next === '{' && /^\{\d+(,\d*)?\}/.test(this.s.slice(this.i)))) throw new PatternError('nothing to repeat', this.i)
    if (atom.t === 'assert') throw new PatternError('nothing to repeat', at)
    return { t: 'rep', node: atom, min, max }
  }

  private atom(): Node {
    const at = this.i
    const c = this.s[this.i++]!
    switch (c) {
      case '(':
        return this.group(at)
      case '[': {
        const { test, negate } = this.charClass(at)
        // Case-folded first, then negated: [^a-c] refuses "A" too.
        return { t: 'char', test: negate ? not(nocase(test)) : nocase(test) }
      }
      case '.':
        return { t: 'char', test: (x) => !isLineEnd(x) }
      case '^':
        return { t: 'assert', kind: 'bol' }
      case '$':
        return { t: 'assert', kind: 'eol' }
      case '\\':
        return this.escape(at)
      case '*':
      case '+':
      case '?':
        throw new PatternError('nothing to repeat', at)
      case ']':
      case '}':
      default: {
        const code = c.charCodeAt(0)
        return { t: 'char', test: literal(code) }
      }
    }
  }

  private group(at: number): Node {
    if (this.peek() === '?') {
      const rest = this.s.slice(this.i, this.i + 3)
      if (rest.startsWith('?:')) this.i += 2
      else if (rest.startsWith('?=') || rest.startsWith('?!')) throw new PatternError('lookahead (?= …) / (?! …) is not supported: runbook patterns are matched in linear time', at)
      else if (rest.startsWith('?<=') || rest.startsWith('?<!')) throw new PatternError('lookbehind (?<= …) / (?<! …) is not supported: runbook patterns are matched in linear time', at)
      else if (rest.startsWith('?<')) {
        const m = /^\?<[A-Za-z_$][\w$]*>/.exec(this.s.slice(this.i))
        if (!m) throw new PatternError('invalid group name', at)
        this.i += m[0].length
      } else throw new PatternError('invalid group', at)
    }
    const inner = this.alt()
    if (this.peek() !== ')') throw new PatternError('unterminated group: a "(" without its ")"', at)
    this.i++
    return inner
  }

  /** After a backslash, outside a class. */
  private escape(at: number): Node {
    const c = this.s[this.i]
    if (c === undefined) throw new PatternError('"\\" at the end of the pattern', at)
    if (c === 'b' || c === 'B') {
      this.i++
      return { t: 'assert', kind: c === 'b' ? 'word' : 'nonword' }
    }
    if (/[1-9]/.test(c)) throw new PatternError(`backreference \\${c} is not supported: runbook patterns are matched in linear time`, at)
    if (c === 'k' && this.s[this.i + 1] === '<') throw new PatternError('named backreference \\k<…> is not supported: runbook patterns are matched in linear time', at)
    return { t: 'char', test: this.classEscape(at) }
  }

  /** An escape that stands for a set of characters (also valid inside a class); `this.i` is after the backslash. */
  private classEscape(at: number): CharTest {
    const c = this.s[this.i++]
    switch (c) {
      case 'd':
        return isDigit
      case 'D':
        return not(isDigit)
      case 'w':
        return isWordCode
      case 'W':
        return not(isWordCode)
      case 's':
        return isSpace
      case 'S':
        return not(isSpace)
      default:
        return literal(this.escapedCode(c, at))
    }
  }

  /** The code a single-character escape stands for. */
  private escapedCode(c: string | undefined, at: number): number {
    switch (c) {
      case undefined:
        throw new PatternError('"\\" at the end of the pattern', at)
      case 't':
        return 9
      case 'n':
        return 10
      case 'v':
        return 11
      case 'f':
        return 12
      case 'r':
        return 13
      case '0':
        return 0
      case 'x':
      case 'u': {
        const len = c === 'x' ? 2 : 4
        const hex = this.s.slice(this.i, this.i + len)
        if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) throw new PatternError(`\\${c} needs ${len} hex digits`, at)
        this.i += len
        return parseInt(hex, 16)
      }
      default:
        if (/[A-Za-z0-9]/.test(c)) throw new PatternError(`unknown escape \\${c}`, at)
        return c.charCodeAt(0)
    }
  }

  /** `[` was read. The members (case-sensitive) and whether the class is negated. */
  private charClass(at: number): { test: CharTest; negate: boolean } {
    let negate = false
    if (this.peek() === '^') {
      negate = true
      this.i++
    }
    const parts: CharTest[] = []
    let first = true
    for (;;) {
      const c = this.peek()
      if (c === undefined) throw new PatternError('unterminated class: a "[" without its "]"', at)
      if (c === ']' && !first) {
        this.i++
        break
      }
      if (c === ']' && first) {
        // JavaScript: [] matches nothing, [^] anything.
        this.i++
        return { test: () => false, negate }
      }
      first = false
      const lo = this.classAtom(at)
      if (this.peek() === '-' && this.s[this.i + 1] !== undefined && this.s[this.i + 1] !== ']') {
        const dash = this.i
        this.i++
        const hi = this.classAtom(at)
        if (typeof lo !== 'number' || typeof hi !== 'number') throw new PatternError('a range needs single characters on both sides', dash)
        if (hi < lo) throw new PatternError('range out of order in the class', dash)
        parts.push((x) => x >= lo && x <= hi)
      } else parts.push(typeof lo === 'number' ? literal(lo) : lo)
    }
    return { test: (x) => parts.some((p) => p(x)), negate }
  }

  /** One member of a class: a code, or a set (\d …). */
  private classAtom(at: number): number | CharTest {
    const c = this.s[this.i++]!
    if (c !== '\\') return c.charCodeAt(0)
    const e = this.s[this.i]
    if (e === 'd' || e === 'D' || e === 'w' || e === 'W' || e === 's' || e === 'S') return this.classEscape(at)
    if (e === 'b') {
      this.i++
      return 8 // backspace inside a class, as in JavaScript
    }
    this.i++
    if (e === '-') return 45
    return this.escapedCode(e, this.i - 2)
  }
}

const literal = (code: number): CharTest => {
  const a = lower(code)
  return (x) => x === code || lower(x) === a
}

