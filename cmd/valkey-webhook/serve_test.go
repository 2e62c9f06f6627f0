package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestCloseWhileDraining(t *testing.T) {
	var draining atomic.Bool
	served := 0
	h := closeWhileDraining(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		w.WriteHeader(http.StatusOK)
	}), &draining)
	for _, tc := range []struct {
		draining bool
		want     string
	}{{false, ""}, {true, "close"}} {
		draining.Store(tc.draining)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/validate-statefulset", nil))
		if got := rec.Header().Get("Connection"); got != tc.want {
			t.Errorf("draining %t: Connection %q, want %q", tc.draining, got, tc.want)
		}
	}
	if served != 2 {
		t.Errorf("the handler served %d requests, want 2 (draining never refuses)", served)
	}
}
