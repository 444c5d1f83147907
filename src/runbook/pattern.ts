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

import { isWordCode, MAX_PATTERN_LENGTH, Parser, PatternError, type AssertKind, type CharTest, type Node } from './pattern-syntax.js'

export { MAX_PATTERN_LENGTH, MAX_REPEAT, PatternError } from './pattern-syntax.js'

/** The pattern's automaton may not grow beyond this many instructions (counted repeats are unrolled). */
export const MAX_PATTERN_SIZE = 2000

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
