// Executable incident runbooks: format (schema), parser (file:line problems), catalog, executor,
// state (resume), transcript (evidence) and the Markdown rendering. No oclif in here.
export * from './schema.js'
export * from './parse.js'
export * from './catalog.js'
export * from './conditions.js'
export * from './engine.js'
export * from './state.js'
export * from './transcript.js'
export * from './render.js'
export * from './redact.js'
export * from './context.js'
export { labctlRunner, labctlCommand } from './runner.js'
export { splitCommand, showCommand, fillTemplate } from './argv.js'
