package proc

import (
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
// The guard closes that gap. It is one small sh process per provider
// process, in its own process group, reading "+ <pgid>" and "- <pgid>" lines
// from a pipe whose other end only this process holds. When this process
// dies, however it dies, the kernel closes that end; the guard reads EOF and
// SIGKILLs every group still registered, then exits. While this process
// lives the guard only waits on the pipe. It is started on first use and
// lives as long as the process (it holds nothing but the pipe).
const guardScript = `g=" "
while read -r op id; do
  case "$op" in
    +) g="$g$id " ;;
    -) n=" "; for x in $g; do [ "$x" = "$id" ] || n="$n$x "; done; g="$n" ;;
  esac
done
for x in $g; do kill -s KILL -- "-$x" 2>/dev/null; done`

var guard struct {
	once sync.Once
	mu   sync.Mutex
	w    io.WriteCloser // nil if the guard could not start
	err  error
}

func startGuard() {
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
		guard.err = fmt.Errorf("start process-group guard: %w", err)
		return
	}
	guard.w = w
	// Reap the guard if it ever exits while this process lives; nothing
	// else waits for it.
	go func() { _ = cmd.Wait() }()
}

// GuardGroup registers process group pgid with the guard, so that it is
// SIGKILLed if this process dies before release is called. Call release
// once the group is gone. An error means the guard is not running; the
// caller still has Pdeathsig for the leader.
func GuardGroup(pgid int) (release func(), err error) {
	guard.once.Do(startGuard)
	if guard.err != nil {
		return func() {}, guard.err
	}
	send := func(op string) error {
		guard.mu.Lock()
		defer guard.mu.Unlock()
		_, err := fmt.Fprintf(guard.w, "%s %d\n", op, pgid)
		return err
	}
	if err := send("+"); err != nil {
		return func() {}, fmt.Errorf("process-group guard: %w", err)
	}
	return func() { _ = send("-") }, nil
}

// StartLocked starts cmd with the parent-death signal SIGKILL on a
// goroutine locked to its OS thread, and keeps that thread locked until
// wait returns. Linux sends the parent-death signal when the thread that
// created the child exits, not the process: the Go runtime ends a thread
// when a goroutine that locked it returns, so a child started from an
// unlocked goroutine could be killed at a random moment. The caller must
// call done exactly once after cmd.Wait returned.
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
