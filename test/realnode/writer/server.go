package main

import (
	"encoding/json"
	"net/http"
)

// Handler is the writer's control endpoint, which the harness calls from outside
// the pod:
//
//	POST /phase?name=roll   ends the current phase, starts "roll"; answers the ended phase
//	GET  /report            the current phase so far
//	GET  /report?final=1    ends the current phase (the next is named by next=, else
//	                        "between"), reads back every key it wrote, answers it
//	POST /stop              stops the writers, reads back the last phase, answers it;
//	                        then onStop runs
//	GET  /healthz           ok
//
// Every answer but /healthz is a Report as JSON.
func (w *Writer) Handler(onStop func()) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /phase", func(rw http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if !validPhase(name) {
			http.Error(rw, "name: 1 to 64 characters", http.StatusBadRequest)
			return
		}
		reply(rw, w.Phase(name))
	})
	mux.HandleFunc("GET /report", func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("final") != "1" {
			reply(rw, w.Report())
			return
		}
		next := r.URL.Query().Get("next")
		if next == "" {
			next = "between"
		}
		if !validPhase(next) {
			http.Error(rw, "next: 1 to 64 characters", http.StatusBadRequest)
			return
		}
		reply(rw, w.Final(r.Context(), next))
	})
	mux.HandleFunc("POST /stop", func(rw http.ResponseWriter, r *http.Request) {
		reply(rw, w.Stop(r.Context()))
		if f, ok := rw.(http.Flusher); ok {
			f.Flush()
		}
		if onStop != nil {
			go onStop()
		}
	})
	return mux
}

func validPhase(name string) bool { return name != "" && len(name) <= 64 }

func reply(rw http.ResponseWriter, r Report) {
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(r)
}
