package generator

import (
	"fmt"
	"strings"
)

// FlagError is a refused option, named by its command-line flag.
type FlagError struct {
	Flag   string
	Value  string
	Reason string
}

func (e FlagError) Error() string {
	return fmt.Sprintf("--%s %q: %s", e.Flag, e.Value, e.Reason)
}

// FlagErrors are every refused option of one command, reported together.
type FlagErrors []FlagError

func (e FlagErrors) Error() string {
	lines := make([]string, len(e))
	for i, fe := range e {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// orNil returns nil for an empty list, so that callers never get a typed nil error.
func (e FlagErrors) orNil() error {
	if len(e) == 0 {
		return nil
	}
	return e
}
