package dashboard

import "github.com/sandboxq/sandboxq/schema"

// eventLogs is the output a server event carries (none yet).
func eventLogs(schema.Event) string { return "" }
