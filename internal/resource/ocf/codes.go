package ocf

import (
	"fmt"

	"tandem/internal/resource"
)

// OCF exit codes (OCF resource agent API 1.1).
const (
	ExitSuccess          = 0
	ExitErrGeneric       = 1
	ExitErrArgs          = 2
	ExitErrUnimplemented = 3
	ExitErrPerm          = 4
	ExitErrInstalled     = 5
	ExitErrConfigured    = 6
	ExitNotRunning       = 7
	ExitRunningPromoted  = 8
	ExitFailedPromoted   = 9
	ExitDegraded         = 190
	ExitDegradedPromoted = 191
)

var codeNames = map[int]string{
	ExitSuccess:          "OCF_SUCCESS",
	ExitErrGeneric:       "OCF_ERR_GENERIC",
	ExitErrArgs:          "OCF_ERR_ARGS",
	ExitErrUnimplemented: "OCF_ERR_UNIMPLEMENTED",
	ExitErrPerm:          "OCF_ERR_PERM",
	ExitErrInstalled:     "OCF_ERR_INSTALLED",
	ExitErrConfigured:    "OCF_ERR_CONFIGURED",
	ExitNotRunning:       "OCF_NOT_RUNNING",
	ExitRunningPromoted:  "OCF_RUNNING_PROMOTED",
	ExitFailedPromoted:   "OCF_FAILED_PROMOTED",
	ExitDegraded:         "OCF_DEGRADED",
	ExitDegradedPromoted: "OCF_DEGRADED_PROMOTED",
}

// CodeName returns "OCF_ERR_CONFIGURED (6)" and the like.
func CodeName(code int) string {
	if n, ok := codeNames[code]; ok {
		return fmt.Sprintf("%s (%d)", n, code)
	}
	return fmt.Sprintf("exit status %d", code)
}

// outcome is what an exit code of an action means to us.
type outcome int

const (
	failed     outcome = iota // a failure of severityOf(code)
	ok                        // the resource is in the state the action asked for
	okDegraded                // running, but the agent says it is degraded: log it
	notRunning                // monitor: cleanly stopped
)

// classify maps an action's exit code to an outcome. It is the table in
// the package doc.
func classify(action string, code int) outcome {
	switch code {
	case ExitSuccess:
		return ok
	case ExitNotRunning:
		switch action {
		case "monitor":
			return notRunning
		case "stop":
			return ok
		}
	case ExitRunningPromoted:
		if action == "start" || action == "monitor" {
			return ok // running; we never promote, so promoted is just running
		}
	case ExitDegraded, ExitDegradedPromoted:
		if action == "start" || action == "monitor" {
			return okDegraded
		}
	}
	return failed
}

// severityOf is Pacemaker's classification of a failed action's exit code.
func severityOf(code int) resource.Severity {
	switch code {
	case ExitErrArgs, ExitErrUnimplemented, ExitErrPerm, ExitErrInstalled:
		return resource.Hard
	case ExitErrConfigured:
		return resource.Fatal
	}
	return resource.Soft
}
