// Package proc owns what the process-running resource agents share: a
// child runs in its own process group so that the group, not just the
// leader, is signalled and killed; its environment is a clean minimal one;
// its output is split into capped lines and logged under a rate limit, so a
// child printing megabytes of garbage or one endless line costs bounded
// memory and log volume. It is imported by the exec, ocf and check agents
// only.
package proc
