import { Flags } from '@oclif/core'

/** Flags of every command that reaches the scanner hosts over SSH. */
export const sshFlags = {
  host: Flags.string({ summary: 'Only this scanner host (name or FQDN); default all.', env: 'LABCTL_HOST' }),
  'accept-new-host-key': Flags.boolean({
    summary: 'Trust an unknown SSH host key on first contact (a changed key is always refused).',
    env: 'LABCTL_ACCEPT_NEW_HOST_KEY',
  }),
}
