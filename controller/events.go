package controller

import (
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// CappedRecorder is an EventRecorder whose notes never pass the API server's
// limit: a longer note (a refusal naming every node, a why listing each
// unreachable one) is cut (eventNote), where the API server would refuse the
// Event and it would be lost.
type CappedRecorder struct {
	events.EventRecorder
}

// Eventf records the Event with its note cut to maxNote bytes.
func (r CappedRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, "%s", eventNote(fmt.Sprintf(note, args...)))
}

// maxNote is the longest note the API server accepts in an Event.
const maxNote = 1024

// eventNote cuts msg to maxNote bytes, at a character, ending in "...".
func eventNote(msg string) string {
	if len(msg) <= maxNote {
		return msg
	}
	cut := maxNote - len("...")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "..."
}
