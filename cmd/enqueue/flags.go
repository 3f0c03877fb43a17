package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// kvMap is a repeatable KEY=VALUE flag. Values may be secrets, and the flag
// package quotes the argument in the error of a failing Set, so Set never
// fails: it records the problem in err, which checkKVFlags reports after
// parsing without the argument.
type kvMap struct {
	keys []string // in order of first appearance
	m    map[string]string
	err  error
}

func (k *kvMap) String() string {
	if k == nil {
		return ""
	}
	return strings.Join(k.keys, ",")
}

func (k *kvMap) Set(v string) error {
	key, val, ok := strings.Cut(v, "=")
	key = strings.TrimSpace(key)
	switch {
	case k.err != nil:
		return nil
	case !ok:
		k.err = errors.New(`want KEY=VALUE, got an argument without "="`)
		return nil
	case key == "":
		k.err = errors.New("want KEY=VALUE, got an empty KEY")
		return nil
	}
	if k.m == nil {
		k.m = make(map[string]string)
	}
	if _, seen := k.m[key]; !seen {
		k.keys = append(k.keys, key)
	}
	k.m[key] = val
	return nil
}

// Map returns the collected pairs, or nil when there are none.
func (k *kvMap) Map() map[string]string {
	if len(k.m) == 0 {
		return nil
	}
	return k.m
}

// checkKVFlags reports the first malformed KEY=VALUE flag of fs.
func checkKVFlags(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if kv, ok := f.Value.(*kvMap); ok && kv.err != nil && err == nil {
			err = usagef("--%s: %v", f.Name, kv.err)
		}
	})
	return err
}

// common holds the flags every command shares (DESIGN §9.1).
type common struct {
	namespace string
	name      string
	redisURL  string
	wait      bool
	timeout   time.Duration
	jsonOut   bool
	queue     string
	maxRetry  int
}

// defaultWaitTimeout is how long --wait waits unless --timeout says
// otherwise.
const defaultWaitTimeout = 10 * time.Minute

// noMaxRetry marks --max-retry as not given.
const noMaxRetry = -1

func (c *common) registerConn(fs *flag.FlagSet) {
	fs.StringVar(&c.redisURL, "redis-url", "", "Redis `URL` (default $REDIS_URL, else "+defaultRedisURL+")")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object on stdout instead of human output")
}

func (c *common) registerWait(fs *flag.FlagSet) {
	fs.BoolVar(&c.wait, "wait", false, "wait until the task has finished and print its result")
	fs.DurationVar(&c.timeout, "timeout", defaultWaitTimeout, "how long --wait waits (exit 3 when it runs out)")
}

func (c *common) registerProject(fs *flag.FlagSet) {
	fs.StringVar(&c.namespace, "namespace", "default", "project namespace")
	fs.StringVar(&c.name, "name", "", "project name (required)")
}

func (c *common) registerEnqueue(fs *flag.FlagSet) {
	fs.StringVar(&c.queue, "queue", "", "enqueue on this `queue` instead of the type's default")
	fs.IntVar(&c.maxRetry, "max-retry", noMaxRetry, "retry at most `n` times instead of the type's default")
}

// usageError is bad input on the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseInterspersed parses flags that may come before or after positional
// arguments (flag stops at the first non-flag). Everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse consumed a "--" if the argument before rest is one.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
