/** Reading Jenkins' answers as text: headers, HTML pages (login pages, Jetty and "Oops!" error pages). */
import type { HttpResult } from '../net/http.js'

export function headerOf(res: HttpResult, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** An HTML page by its Content-Type or its first tag: a login page or proxy, never the API's answer. */
export function looksLikeHtml(res: HttpResult): boolean {
  const type = String(headerOf(res, 'content-type') ?? '')
  return /html/i.test(type) || /^\s*(<!doctype html|<html)/i.test(res.body)
}

export function stripQuery(url: string): string {
  return url.replace(/[?#].*$/, '')
}

const ENTITIES: Readonly<Record<string, string>> = Object.freeze({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' })

export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === '#') {
      const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)
      return Number.isFinite(n) && n >= 0 && n <= 0x10ffff ? String.fromCodePoint(n) : m
    }
    return ENTITIES[e.toLowerCase()] ?? m
  })
}

/** The telling part of an HTML page: its title, or its first heading and paragraph. */
export function htmlSummary(html: string): string {
  const grab = (tag: string): string => {
    const m = new RegExp(`<${tag}\\b[^>]*>([\\s\\S]*?)</${tag}>`, 'i').exec(html)
    return m ? decodeEntities(m[1]!.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim() : ''
  }
  const title = grab('title')
  if (title && !/\[Jenkins\]$/.test(title)) return title
  const parts = [grab('h1') || grab('h2'), grab('p')].filter(Boolean)
  if (parts.length > 0) return parts.join(': ')
  return decodeEntities(html.replace(/<script[\s\S]*?<\/script>/gi, ' ').replace(/<[^>]*>/g, ' '))
}
