package dashboard

import "github.com/sandboxq/sandboxq/schema"

// eventLogs is the tail of output a failed or stopped server's event
// carries.
func eventLogs(e schema.Event) string { return e.Logs }
