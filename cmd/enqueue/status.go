package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/tasks"
)

// statusMode is how --wait shows a task while it waits.
type statusMode int

const (
	statusLines statusMode = iota // one plain line per change (not a terminal)
	statusLive                    // one line replaced in place (a terminal)
	statusJSON                    // one JSON object per change (--json)
)

// clearLine returns the cursor to the start of the line and clears it.
const clearLine = "\r\x1b[K"

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// waitStatus is what the status line shows of a waiting task.
type waitStatus struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	State      string `json:"state"`
	Attempt    int    `json:"attempt"`
	MaxAttempt int    `json:"max_attempts"`
	ElapsedMS  int64  `json:"elapsed_ms"`
	Server     string `json:"server_status,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	Progress   string `json:"-"`
}

// newWaitStatus reads a task's status for the status line.
func newWaitStatus(r *tasks.Result, elapsed time.Duration) waitStatus {
	s := waitStatus{
		ID: r.ID, Type: r.Type, State: r.State, Attempt: r.Retried + 1, MaxAttempt: r.MaxRetry + 1,
		ElapsedMS: elapsed.Milliseconds(), LastError: r.LastError,
	}
	final := r.State == tasks.StateCompleted || r.State == tasks.StateArchived
	if len(r.Result) > 0 && !final {
		s.Progress = compact(r.Result)
		var p struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(r.Result, &p) == nil {
			s.Server = p.Status
		}
	}
	return s
}

// key is what a change is: everything but the elapsed time.
func (s waitStatus) key() string {
	return fmt.Sprintf("%s|%d|%s|%s|%s", s.State, s.Attempt, s.Server, s.LastError, s.Progress)
}

// text is the status line for a terminal.
func (s waitStatus) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "enqueue: %s %s: %s, attempt %d/%d, %s", s.Type, s.ID, s.State, s.Attempt, s.MaxAttempt,
		(time.Duration(s.ElapsedMS) * time.Millisecond).Truncate(time.Second))
	if s.Server != "" {
		fmt.Fprintf(&b, ", server %s", s.Server)
	}
	if s.State == tasks.StateRetry && s.LastError != "" {
		fmt.Fprintf(&b, ", last error: %s", s.LastError)
	}
	line := strings.ReplaceAll(b.String(), "\n", " ")
	if r := []rune(line); len(r) > 160 {
		line = string(r[:159]) + "…"
	}
	return line
}

// statusWriter prints a waiting task's status on stderr in one of the
// modes; it is used by one goroutine at a time.
type statusWriter struct {
	w     io.Writer
	mode  statusMode
	name  string // type and id, for plain lines
	last  waitStatus
	seen  bool
	shown bool // a live line is on screen
}

// update shows s: in place on a terminal (every call, so the elapsed time
// moves), else only when it changed.
func (sw *statusWriter) update(s waitStatus) {
	changed := !sw.seen || s.key() != sw.last.key()
	prev := sw.last
	sw.last, sw.seen = s, true
	switch sw.mode {
	case statusLive:
		fmt.Fprint(sw.w, clearLine+s.text())
		sw.shown = true
	case statusJSON:
		if changed {
			writeJSON(sw.w, s, false)
		}
	default:
		if !changed {
			return
		}
		if s.State != prev.State {
			line := fmt.Sprintf("enqueue: %s: %s", sw.name, s.State)
			if s.State == tasks.StateRetry && s.LastError != "" {
				line += fmt.Sprintf(" (attempt %d of %d failed: %s)", s.Attempt-1, s.MaxAttempt, s.LastError)
			}
			fmt.Fprintln(sw.w, line)
		}
		if s.Progress != "" && s.Progress != prev.Progress {
			fmt.Fprintf(sw.w, "enqueue: %s: progress %s\n", sw.name, s.Progress)
		}
	}
}

// done removes a live line, so the final line is printed once, alone.
func (sw *statusWriter) done() {
	if sw.shown {
		fmt.Fprint(sw.w, clearLine)
		sw.shown = false
	}
}
