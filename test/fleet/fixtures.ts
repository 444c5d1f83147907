import { setTimeout as sleep } from 'node:timers/promises'

// Answers captured from HAProxy 2.6's runtime API (Debian 12), for the parser tests.
export const STATE_TWO = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 trivy-vm-be 1 trivy-0 198.18.7.10 2 0 1 1 12 6 3 4 6 0 0 0 - 4954 - 0 0 - - 0
3 trivy-vm-be 2 trivy-1 198.18.7.11 2 8 1 1 0 6 3 4 6 0 0 0 - 4954 - 0 0 - - 0
3 trivy-vm-be 3 trivy-2 198.18.7.12 0 1 1 1 5 8 2 0 6 0 0 0 - 4954 - 0 0 - - 0

`
const STAT_HEADER = '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration'
export const STAT_TWO = `${STAT_HEADER}
trivy-vm-be,trivy-0,1,1,3,4,,10,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,12,0,,1,3,1,,10,,2,0,,1,L7OK,200,1
trivy-vm-be,trivy-1,0,0,0,1,,5,0,0,,0,,0,0,0,0,DRAIN,1,1,0,0,0,0,0,,1,3,2,,5,,2,0,,1,L7OK,200,1
trivy-vm-be,trivy-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,1,1,5,5,,1,3,3,,0,,2,0,,0,* L4CON,,0

`

/** Polls OK (bounded) until it says true; throws naming WHAT at the deadline. */
export async function until(what: string, ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await ok().catch(() => false)) return
    await sleep(120)
  }
  throw new Error(`timed out waiting for ${what}`)
}
