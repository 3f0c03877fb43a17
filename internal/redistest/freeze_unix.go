//go:build unix

package redistest

import "syscall"

// Freeze stops the node with SIGSTOP: it keeps its sockets but answers
// nothing, so a primary's writes do not reach it, until Thaw.
func (n *Node) Freeze() error { return syscall.Kill(n.Pid, syscall.SIGSTOP) }

// Thaw resumes a frozen node with SIGCONT.
func (n *Node) Thaw() error { return syscall.Kill(n.Pid, syscall.SIGCONT) }
