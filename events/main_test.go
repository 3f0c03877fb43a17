package events

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// helperEnv switches the test binary into a managed server for the local
// provider: it listens on $PORT after $HELPER_DELAY (a Go duration), and
// GET /crash makes it exit with code 3.
const helperEnv = "EVENTS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "serve" {
		os.Exit(helperServe())
	}
	if os.Getenv(benchProviderEnv) != "" {
		os.Exit(benchProviderMain())
	}
	redistest.Main(m)
}

func helperServe() int {
	if d, err := time.ParseDuration(os.Getenv("HELPER_DELAY")); err == nil {
		time.Sleep(d)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper listen:", err)
		return 90
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("GET /crash", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(os.Stderr, "crashing on request")
		os.Exit(3)
	})
	return map[bool]int{true: 91}[http.Serve(l, mux) != nil]
}
