package proc

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// reserved holds the ports handed to live lifecycles in this process, so
// two servers started at the same moment never get the same free port.
var reserved = struct {
	sync.Mutex
	owner map[int]*Server
}{owner: map[int]*Server{}}

// reservePort picks the port for owner and records it as reserved. want 0
// means any free port. A busy want moves upward unless strict.
func reservePort(want int, strict bool, owner *Server) (int, error) {
	reserved.Lock()
	defer reserved.Unlock()
	// owner may hold a port from an earlier lifecycle; it is reserved anew.
	for p, o := range reserved.owner {
		if o == owner {
			delete(reserved.owner, p)
		}
	}
	if want == 0 {
		for range 100 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("proc: pick a free port: %w", err)
			}
			p := l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
			if _, taken := reserved.owner[p]; !taken {
				reserved.owner[p] = owner
				return p, nil
			}
		}
		return 0, fmt.Errorf("proc: pick a free port: every port offered is already reserved")
	}
	for p := want; p <= 65535; p++ {
		if _, taken := reserved.owner[p]; !taken && portFree(p) {
			reserved.owner[p] = owner
			return p, nil
		}
		if strict {
			return 0, fmt.Errorf("proc: invalid Port: %d is in use and StrictPort is set", want)
		}
	}
	return 0, fmt.Errorf("proc: invalid Port: no free port from %d to 65535", want)
}

// releasePort forgets owner's reservation.
func releasePort(owner *Server) {
	reserved.Lock()
	defer reserved.Unlock()
	for p, o := range reserved.owner {
		if o == owner {
			delete(reserved.owner, p)
		}
	}
}

// portFree reports whether 127.0.0.1:p can be bound now.
func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
