package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"tandem/internal/fence"
	"tandem/internal/node"
)

// NodeFencer is what a backend offers `tandem fence NODE --yes` (a
// *node.Node does): a fence by hand, run by the agent so that its audit
// log records it.
type NodeFencer interface {
	FenceNode(ctx context.Context, target, actor string) (fence.FenceResult, error)
}

// fenceWait is how long a fence request waits for the outcome: below the
// server's write timeout and the CLI's 30 s. A longer fence goes on in
// the agent. A variable for the test of that case.
var fenceWait = 25 * time.Second

// fenceHandlers serves POST /v1/nodes/{node}/fence ({"yes": true}): 200
// with the result once the fence ran (confirmed off, or every level
// failed: then with its error), 202 when it is still under way after
// fenceWait, 4xx when it could not start.
func (s *Server) fenceHandlers(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/nodes/{node}/fence", func(w http.ResponseWriter, r *http.Request) {
		f, ok := s.backend.(NodeFencer)
		if !ok {
			writeError(w, http.StatusNotFound, errors.New("this agent cannot fence"))
			return
		}
		var req struct {
			Yes bool `json:"yes"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		target := r.PathValue("node")
		if !req.Yes {
			writeError(w, http.StatusBadRequest, fmt.Errorf("fencing %s powers it off with everything it runs; confirm with yes", target))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), fenceWait)
		defer cancel()
		res, err := f.FenceNode(ctx, target, actor(r))
		switch {
		case errors.Is(err, node.ErrFenceUnderWay):
			writeJSON(w, http.StatusAccepted, map[string]any{"node": target, "under_way": true, "message": err.Error()})
		case err != nil && len(res.Attempts) > 0:
			writeJSON(w, http.StatusOK, map[string]any{"node": target, "error": err.Error(), "result": res})
		default:
			s.reply(w, err, map[string]any{"node": target, "result": res})
		}
	})
}

// FenceReply is the agent's answer to a fence by hand.
type FenceReply struct {
	Node     string            `json:"node"`
	UnderWay bool              `json:"under_way"`
	Message  string            `json:"message"`
	Error    string            `json:"error"`
	Result   fence.FenceResult `json:"result"`
}
