// Package eventhub shares one Redis pub/sub connection among the live
// readers of projects' event streams in a process (the API's and the
// dashboard's Server-Sent Events). Each reader subscribes to its project's
// channel (schema.EventsChannel); a message wakes the readers of that
// project, which then read the stream itself. The stream is the source of
// truth; a message only says "read now", so a lost message costs latency,
// never an event.
package eventhub
