package demo

// ClockTicks is USER_HZ, the unit of ProcessCPUTicks.
const ClockTicks = clockTicks

// ProcessCPUTicks is a process's user + system CPU time in clock ticks,
// from /proc (for other benchmarks of idle agents: tandem bench scrape).
func ProcessCPUTicks(pid int) (int64, error) { return cpuTicks(pid) }

// ProcessRSSMB is a process's resident memory in MB, from /proc.
func ProcessRSSMB(pid int) (float64, error) { return rssMB(pid) }
