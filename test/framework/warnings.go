package framework

import "sync"

// WarningRecorder keeps the admission warnings the API server passes on, as kubectl
// would print them. It is a rest.WarningHandler.
type WarningRecorder struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeader records the text of one warning.
func (w *WarningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// Take returns the warnings seen since the last call and forgets them.
func (w *WarningRecorder) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}
