package proc

import (
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// Log stream names accepted by Server.Logs.
const (
	StreamStdout   = "stdout"
	StreamStderr   = "stderr"
	StreamCombined = "combined"
)

// logSet holds the three bounded views of a server's output.
type logSet struct {
	mu                       sync.Mutex
	stdout, stderr, combined ring
}

func newLogSet(limit int) *logSet {
	return &logSet{stdout: ring{limit: limit}, stderr: ring{limit: limit}, combined: ring{limit: limit}}
}

func (l *logSet) write(stream string, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if stream == StreamStderr {
		l.stderr.write(p)
	} else {
		l.stdout.write(p)
	}
	l.combined.write(p)
}

// copyFrom reads r until it fails, appending every chunk to stream.
func (l *logSet) copyFrom(r io.Reader, stream string) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			l.write(stream, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (l *logSet) get(stream string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch stream {
	case StreamStdout:
		return l.stdout.String(), nil
	case StreamStderr:
		return l.stderr.String(), nil
	case StreamCombined:
		return l.combined.String(), nil
	}
	return "", fmt.Errorf("proc: %w %q (want %s, %s or %s)", errUnknownStream, stream,
		StreamStdout, StreamStderr, StreamCombined)
}

// ring keeps the last limit bytes written to it. Its buffer grows with use up
// to limit, so an idle server costs nothing.
type ring struct {
	limit int
	buf   []byte // len(buf) <= limit
	head  int    // once full: index of the oldest byte
	full  bool
	cut   bool // bytes were dropped
}

func (r *ring) write(p []byte) {
	if len(p) >= r.limit {
		r.cut = r.cut || len(p) > r.limit || len(r.buf) > 0
		if cap(r.buf) < r.limit {
			r.buf = make([]byte, r.limit)
		}
		r.buf = r.buf[:r.limit]
		copy(r.buf, p[len(p)-r.limit:])
		r.head, r.full = 0, true
		return
	}
	if !r.full {
		room := r.limit - len(r.buf)
		if len(p) < room {
			r.buf = append(r.buf, p...)
			return
		}
		r.buf = append(r.buf, p[:room]...)
		p = p[room:]
		r.head, r.full = 0, true
	}
	if len(p) > 0 {
		r.cut = true
	}
	for len(p) > 0 {
		n := copy(r.buf[r.head:], p)
		p = p[n:]
		r.head = (r.head + n) % r.limit
	}
}

// String returns the kept bytes, oldest first. When the front was cut inside
// a UTF-8 sequence, the orphaned continuation bytes are left out.
func (r *ring) String() string {
	out := make([]byte, 0, len(r.buf))
	out = append(out, r.buf[r.head:]...)
	out = append(out, r.buf[:r.head]...)
	if r.cut {
		for i := 0; i < utf8.UTFMax-1 && len(out) > 0 && !utf8.RuneStart(out[0]); i++ {
			out = out[1:]
		}
	}
	return string(out)
}
