import { Flags } from '@oclif/core'

/** --host (LABCTL_HOST): the one declaration; SUMMARY says what the command does with it. */
export const hostFlag = (summary = 'Only this scanner host (name or FQDN); default all.') => Flags.string({ summary, env: 'LABCTL_HOST' })

/** Flags of every command that reaches the scanner hosts over SSH. */
export const sshFlags = {
  host: hostFlag(),
  'accept-new-host-key': Flags.boolean({
    summary: 'Trust an unknown SSH host key on first contact (a changed key is always refused).',
    env: 'LABCTL_ACCEPT_NEW_HOST_KEY',
  }),
}
