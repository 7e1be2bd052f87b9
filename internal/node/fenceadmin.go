package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tandem/internal/fence"
)

// ErrFenceUnderWay: a fence asked for by hand outlasted the request; it
// goes on in the agent, and its outcome is in the audit log.
var ErrFenceUnderWay = errors.New("the fence is still under way; its outcome will be in the audit log (tandem events --kind fence_succeeded,fence_failed)")

// FenceNode powers target off through the configured fence devices, from
// this agent, because actor asked (tandem fence NODE --yes): the attempts
// go to the audit log with the actor. It returns once target is confirmed
// off or every level failed, or ErrFenceUnderWay when ctx ends first (the
// fence is not cancelled: a fence cut in the middle helps nobody). A
// confirmed fence of this node's peer counts for its fencing decisions as
// one of its own (a takeover it guards may start).
func (n *Node) FenceNode(ctx context.Context, target, actor string) (fence.FenceResult, error) {
	switch {
	case target == n.self:
		return fence.FenceResult{}, fmt.Errorf("%w: %s is this agent's own node; fence it from another machine (tandem fence %s --yes --local there)", ErrInvalid, target, target)
	case n.fencer == nil || len(n.fencer.Topologies[target].Levels) == 0:
		return fence.FenceResult{}, fmt.Errorf("%w: no fence device fences %s (fence_devices[].nodes)", ErrNotFound, target)
	}
	type outcome struct {
		r   fence.FenceResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		fctx, cancel := context.WithTimeout(context.Background(), n.fencer.Topologies[target].Budget()+10*time.Second)
		defer cancel()
		r, err := n.fencer.FenceBy(fctx, target, "by hand", actor)
		if err == nil && r.Confirmed && n.fence != nil && target == n.fence.peer {
			n.fence.manual()
		}
		done <- outcome{r, err}
	}()
	select {
	case o := <-done:
		return o.r, o.err
	case <-ctx.Done():
		return fence.FenceResult{}, ErrFenceUnderWay
	}
}
