package proc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guardHelper is the test binary as a provider process that dies hard: it
// starts a process group whose leader is a shell with two children (the
// shape of "npm run dev"), the way the provider starts servers and
// commands, prints the group id and waits to be killed.
func guardHelper() int {
	cmd := exec.Command(shell, "-c", "sleep 300 & sleep 300 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g, err := StartGuard()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := StartLocked(cmd); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := g.Add(cmd.Process.Pid); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	select {}
}

// TestGroupDiesWithTheProvider SIGKILLs a process that started a process
// group the way the provider does: the whole group, not only its leader
// (which Pdeathsig alone would take down), is gone within the deadline.
func TestGroupDiesWithTheProvider(t *testing.T) {
	t.Parallel()
	helper := exec.Command(os.Args[0])
	helper.Env = []string{helperEnv + "=guard", "PATH=" + DefaultPath}
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper printed %q", line)
	}
	t.Cleanup(func() { signalGroup(pgid, syscall.SIGKILL) })
	waitUntil(t, "the group's three processes to run", func() bool { return len(groupPIDs(pgid)) == 3 })

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	waitUntil(t, "the group to be gone after its provider was killed", func() bool { return len(groupPIDs(pgid)) == 0 })
}

// waitUntil polls cond until it holds or waitTimeout passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestGuardCloseKillsOnlyRegisteredGroups checks Add, release and Close:
// Close kills the groups still registered and returns once the guard has
// exited; a released group is left alone, so a process group id reused
// later is safe; Add after Close is an error.
func TestGuardCloseKillsOnlyRegisteredGroups(t *testing.T) {
	t.Parallel()
	start := func() *exec.Cmd {
		c := exec.Command("sleep", "300")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	kept, released := start(), start()
	g, err := StartGuard()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Add(kept.Process.Pid); err != nil {
		t.Fatal(err)
	}
	release, err := g.Add(released.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitUntil(t, "the registered group to be killed", func() bool { return len(groupPIDs(kept.Process.Pid)) == 0 })
	if len(groupPIDs(released.Process.Pid)) != 1 {
		t.Fatal("the released group was killed too")
	}
	if _, err := g.Add(released.Process.Pid); err == nil {
		t.Fatal("Add after Close succeeded")
	}
	var nilGuard *Guard
	if _, err := nilGuard.Add(1); err != nil || nilGuard.Close() != nil {
		t.Fatal("a nil Guard is not a no-op")
	}
}
