package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// drillHandlers serves `tandem drill`: POST /v1/groups/{group}/drills
// records a drill ({"result", "message", "attrs"}) in the agent's audit
// log; POST /v1/groups/{group}/drill-crash kills the agent (SIGKILL) once
// it has answered, for an unplanned drill of a group it runs.
func (s *Server) drillHandlers(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/groups/{group}/drills", func(w http.ResponseWriter, r *http.Request) {
		d, ok := s.backend.(Driller)
		if !ok {
			writeError(w, http.StatusNotFound, errors.New("this agent records no drills"))
			return
		}
		var req struct {
			Result  string         `json:"result"`
			Message string         `json:"message"`
			Attrs   map[string]any `json:"attrs"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		err := d.RecordDrill(r.PathValue("group"), req.Result, req.Message, req.Attrs, actor(r))
		s.reply(w, err, map[string]string{"group": r.PathValue("group"), "result": req.Result})
	})
	mux.HandleFunc("POST /v1/groups/{group}/drill-crash", func(w http.ResponseWriter, r *http.Request) {
		d, ok := s.backend.(Driller)
		if !ok {
			writeError(w, http.StatusNotFound, errors.New("this agent cannot be killed for a drill"))
			return
		}
		kill, err := d.CrashForDrill(r.PathValue("group"), actor(r))
		if err != nil {
			s.reply(w, err, nil)
			return
		}
		// The whole answer, with its length, is on the wire before the
		// kill: the client reads it although the agent is gone.
		body, _ := json.Marshal(map[string]string{"group": r.PathValue("group"), "killed": "SIGKILL"})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		kill()
	})
}
