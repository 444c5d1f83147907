// The patterns of runbook conditions (`name:`, `detail:`, `matches:`), matched in linear time. A
// backtracking engine (JavaScript's RegExp) takes exponential time on patterns like `(a+)+$` against
// 'aaaa…b' and blocks the event loop, so not even Ctrl-C gets through; this one compiles the pattern to
// a small automaton and walks the text once, carrying every possible position in the pattern at once
// (Thompson's construction, simulated breadth-first): time is text length × pattern size, always.
// The syntax is the common subset of regular expressions: literals, `.`, classes `[a-z]` `[^…]`, `\d \w
// \s` (and `\D \W \S`), `\b \B`, anchors `^ $`, groups `(…)` `(?:…)` `(?<name>…)`, alternation `|`,
// quantifiers `* + ? {n} {n,} {n,m}` (a trailing `?` is accepted and means the same for a yes/no match).
// Constructs that need backtracking — backreferences and lookaround — are refused with their position.
// Matching is case-insensitive and unanchored (like `new RegExp(p, 'i').test(text)`).

/** A pattern that cannot be used: `index` is the offset in the pattern where the problem is. */
export class PatternError extends Error {
  readonly index: number
  constructor(message: string, index: number) {
    super(message)
    this.name = 'PatternError'
    this.index = index
  }
}

/** The pattern's automaton may not grow beyond this many instructions (counted repeats are unrolled). */
export const MAX_PATTERN_SIZE = 2000
/** Longest pattern source accepted. */
export const MAX_PATTERN_LENGTH = 1000
/** A repeat count above this is refused ({n,m}). */
export const MAX_REPEAT = 100

type CharTest = (code: number) => boolean
type AssertKind = 'bol' | 'eol' | 'word' | 'nonword'
type Node =
  | { t: 'char'; test: CharTest }
  | { t: 'seq'; items: Node[] }
  | { t: 'alt'; items: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number }
  | { t: 'assert'; kind: AssertKind }

type Instr = { op: 'char'; test: CharTest } | { op: 'split'; x: number; y: number } | { op: 'jmp'; x: number } | { op: 'assert'; kind: AssertKind } | { op: 'match' }

/** What one or more `test` calls may spend (threads stepped); shared so a whole evaluation is bounded. */
export type MatchBudget = { left: number }

export class BudgetExceededError extends Error {
  constructor() {
    super('the conditions needed too much work to evaluate')
    this.name = 'BudgetExceededError'
  }
}

export type Pattern = { readonly source: string; test(text: string, budget?: MatchBudget): boolean }

const isDigit: CharTest = (c) => c >= 48 && c <= 57
const isWordCode = (c: number): boolean => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95
const isSpace: CharTest = (c) => c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff
const isLineEnd = (c: number): boolean => c === 10 || c === 13 || c === 0x2028 || c === 0x2029
const not = (f: CharTest): CharTest => (c) => !f(c)

const lower = (c: number): number => (c < 128 ? (c >= 65 && c <= 90 ? c + 32 : c) : String.fromCharCode(c).toLowerCase().charCodeAt(0))
const upper = (c: number): number => (c < 128 ? (c >= 97 && c <= 122 ? c - 32 : c) : String.fromCharCode(c).toUpperCase().charCodeAt(0))
/** Case-insensitive: a code matches when it, its lower or its upper case form does. */
const nocase = (f: CharTest): CharTest => (c) => f(c) || f(lower(c)) || f(upper(c))

class Parser {
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

class Emitter {
  readonly prog: Instr[] = []

  private push(i: Instr): number {
    if (this.prog.length >= MAX_PATTERN_SIZE) throw new PatternError(`the pattern is too large (more than ${MAX_PATTERN_SIZE} steps once its repeats are unrolled)`, 0)
    this.prog.push(i)
    return this.prog.length - 1
  }

  emit(n: Node): void {
    switch (n.t) {
      case 'char':
        this.push({ op: 'char', test: n.test })
        return
      case 'assert':
        this.push({ op: 'assert', kind: n.kind })
        return
      case 'seq':
        for (const x of n.items) this.emit(x)
        return
      case 'alt': {
        // split L1, next; L1: a; jmp end; next: split L2, … ; last alternative.
        const jumps: number[] = []
        n.items.forEach((x, k) => {
          if (k < n.items.length - 1) {
            const split = this.push({ op: 'split', x: 0, y: 0 })
            ;(this.prog[split] as { x: number }).x = this.prog.length
            this.emit(x)
            jumps.push(this.push({ op: 'jmp', x: 0 }))
            ;(this.prog[split] as { y: number }).y = this.prog.length
          } else this.emit(x)
        })
        for (const j of jumps) (this.prog[j] as { x: number }).x = this.prog.length
        return
      }
      case 'rep': {
        for (let k = 0; k < n.min; k++) this.emit(n.node)
        if (n.max === Infinity) {
          const split = this.push({ op: 'split', x: 0, y: 0 })
          ;(this.prog[split] as { x: number }).x = this.prog.length
          this.emit(n.node)
          this.push({ op: 'jmp', x: split })
          ;(this.prog[split] as { y: number }).y = this.prog.length
        } else {
          const splits: number[] = []
          for (let k = n.min; k < n.max; k++) {
            const split = this.push({ op: 'split', x: 0, y: 0 })
            ;(this.prog[split] as { x: number }).x = this.prog.length
            splits.push(split)
            this.emit(n.node)
          }
          for (const s of splits) (this.prog[s] as { y: number }).y = this.prog.length
        }
        return
      }
    }
  }

  finish(): Instr[] {
    this.push({ op: 'match' })
    return this.prog
  }
}

/** Compiles a pattern; throws a PatternError saying what is wrong and where. */
export function compilePattern(source: string): Pattern {
  if (source.length > MAX_PATTERN_LENGTH) throw new PatternError(`the pattern is longer than ${MAX_PATTERN_LENGTH} characters`, MAX_PATTERN_LENGTH)
  const ast = new Parser(source).parse()
  const e = new Emitter()
  e.emit(ast)
  const prog = e.finish()
  return { source, test: (text, budget) => run(prog, text, budget) }
}

/** Whether a pattern compiles; the problem otherwise. */
export function patternProblem(source: string): PatternError | undefined {
  try {
    compilePattern(source)
    return undefined
  } catch (err) {
    if (err instanceof PatternError) return err
    throw err
  }
}

function run(prog: Instr[], text: string, budget?: MatchBudget): boolean {
  const n = text.length
  const mark = new Int32Array(prog.length).fill(-1)
  let gen = 0
  let clist: number[] = []
  let nlist: number[] = []
  const stack: number[] = []
  const word = (pos: number): boolean => pos >= 0 && pos < n && isWordCode(text.charCodeAt(pos))
  /** Adds the thread at pc and everything reachable without reading a character; true on a match. */
  const add = (list: number[], pc0: number, pos: number): boolean => {
    stack.push(pc0)
    while (stack.length) {
      const pc = stack.pop()!
      if (mark[pc] === gen) continue
      mark[pc] = gen
      const ins = prog[pc]!
      switch (ins.op) {
        case 'match':
          stack.length = 0
          return true
        case 'jmp':
          stack.push(ins.x)
          break
        case 'split':
          stack.push(ins.y, ins.x)
          break
        case 'assert': {
          const ok =
            ins.kind === 'bol' ? pos === 0 : ins.kind === 'eol' ? pos === n : ins.kind === 'word' ? word(pos - 1) !== word(pos) : word(pos - 1) === word(pos)
          if (ok) stack.push(pc + 1)
          break
        }
        case 'char':
          list.push(pc)
          break
      }
    }
    return false
  }
  if (add(clist, 0, 0)) return true
  for (let i = 0; i < n; i++) {
    if (budget) {
      budget.left -= clist.length + 1
      if (budget.left < 0) throw new BudgetExceededError()
    }
    gen++
    nlist.length = 0
    const code = text.charCodeAt(i)
    for (const pc of clist) {
      const ins = prog[pc] as { op: 'char'; test: CharTest }
      if (ins.test(code) && add(nlist, pc + 1, i + 1)) return true
    }
    if (add(nlist, 0, i + 1)) return true
    ;[clist, nlist] = [nlist, clist]
  }
  return false
}
