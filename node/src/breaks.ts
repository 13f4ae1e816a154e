// Deliberate protocol breaks (`--break NAME`), so the conformance kit's negative tests can prove
// that it catches a plugin that breaks a rule. With a break on, the server stops validating its own
// answers (otherwise it would refuse to send the broken answer).

export const BREAKS = {
  "running-without-remote-status-input":
    "RUNNING answers omit remote_status_input (rule RUNNING_WITHOUT_REMOTE_STATUS_INPUT).",
  "no-echo":
    "Rotating scenarios: the token never rotates (every RUNNING answer carries " +
    '"<task_id>:0" instead of "<task_id>:<check_number>") and the echoed token is not verified.',
  "failed-without-error":
    "Scenario failures (fail_with) answer FAILED without the error envelope (rule FAILED_WITHOUT_ERROR).",
  "ignore-status-check":
    "is_status_check is ignored: every call is treated as new work (check 0), so a scenario " +
    "that needs status checks never finishes.",
} as const;

export type Break = keyof typeof BREAKS;

export function isBreak(name: string): name is Break {
  return Object.hasOwn(BREAKS, name);
}
