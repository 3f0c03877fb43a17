package proc

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// The parent-death signal (Pdeathsig) takes a group leader down when the
// process that started it dies, but only the leader: a server started as
// "sh -c 'a & b'" or through npm leaves children in its group that would
// keep running, and keep their ports, after the provider was SIGKILLed.
//
// A Guard closes that gap. It is one small sh process, in its own process
// group, reading "+ <pgid>" and "- <pgid>" lines from a pipe whose other end
// only this process holds. When this process dies, however it dies, the
// kernel closes that end; the guard reads EOF, SIGKILLs every group still
// registered and exits. Close does the same on purpose.
const guardScript = `g=" "
while read -r op id; do
  case "$op" in
    +) g="$g$id " ;;
    -) n=" "; for x in $g; do [ "$x" = "$id" ] || n="$n$x "; done; g="$n" ;;
  esac
done
for x in $g; do kill -s KILL -- "-$x" 2>/dev/null; done`

// Guard kills the registered process groups when this process dies or
// Close is called. A nil *Guard registers nothing.
type Guard struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	w      io.WriteCloser
	closed bool
}

// StartGuard starts the guard process.
func StartGuard() (*Guard, error) {
	cmd := exec.Command(shell, "-c", guardScript)
	cmd.Env = []string{"PATH=" + DefaultPath}
	cmd.Dir = "/"
	// Its own group: signals meant for this process's group (a terminal's
	// Ctrl-C) must not end the guard before it has done its work. No
	// Pdeathsig: it must outlive this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("start process-group guard: %w", err)
	}
	return &Guard{cmd: cmd, w: w}, nil
}

// Add registers process group pgid, so that it is SIGKILLed if this process
// dies (or Close is called) before release. Call release once the group is
// gone. An error means the guard is not running; the group's leader still
// has Pdeathsig.
func (g *Guard) Add(pgid int) (release func(), err error) {
	if g == nil {
		return func() {}, nil
	}
	if err := g.send("+", pgid); err != nil {
		return func() {}, fmt.Errorf("process-group guard: %w", err)
	}
	return func() { _ = g.send("-", pgid) }, nil
}

func (g *Guard) send(op string, pgid int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("closed")
	}
	_, err := fmt.Fprintf(g.w, "%s %d\n", op, pgid)
	return err
}

// Close ends the guard: it SIGKILLs the groups still registered and exits;
// Close returns once it has.
func (g *Guard) Close() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	err := g.w.Close()
	g.mu.Unlock()
	return errors.Join(err, g.cmd.Wait())
}

// StartLocked starts cmd with the parent-death signal SIGKILL, keeping the
// calling goroutine locked to its OS thread until done is called. Linux
// sends the parent-death signal when the thread that created the child
// exits, not the process, and the Go runtime ends a thread when a goroutine
// that locked it returns; a child started from an unlocked goroutine could
// be killed at a random moment, or outlive a thread it no longer belongs
// to. The caller must call done exactly once, on the same goroutine, after
// cmd.Wait returned.
func StartLocked(cmd *exec.Cmd) (done func(), err error) {
	runtime.LockOSThread()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return runtime.UnlockOSThread, nil
}
