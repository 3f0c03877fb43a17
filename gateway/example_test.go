package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// fakeGateway stands in for the ComputeSDK gateway: it answers
// find-or-create with a sandbox whose daemon is the same server.
func fakeGateway() *httptest.Server {
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("POST /v1/sandbox/find-or-create", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-ComputeSDK-API-Key") != "computesdk_example" {
			http.Error(w, `{"success":false,"error":"invalid API key"}`, http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"success":true,"data":{"sandboxId":"sb-1","url":"`+srv.URL+`/daemon",
			"token":"daemon-token","provider":"local","namespace":"acme","name":"project-42","status":"ready"}}`)
	})
	mux.HandleFunc("POST /daemon/files", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"message":"File created","data":{"file":{"name":"index.js","path":"/app/index.js","size":21}}}`)
	})
	srv = httptest.NewServer(mux)
	return srv
}

func ExampleClient_FindOrCreate() {
	gw := fakeGateway()
	defer gw.Close()

	c, err := gateway.NewClient(gw.URL,
		gateway.WithAPIKey(secret.New("computesdk_example")),
		gateway.WithProvider("local"),
		gateway.WithTimeout(10*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// The same (namespace, name) always resolves to the same sandbox.
	sb, err := c.FindOrCreate(ctx, "acme", "project-42", &gateway.CreateOptions{Timeout: 30 * 60 * 1000})
	if err != nil {
		if gateway.IsRetryable(err) {
			log.Printf("try again in %v: %v", gateway.RetryAfter(err), err)
		}
		log.Fatal(err)
	}
	fmt.Println(sb.SandboxID, sb.Namespace, sb.Name, sb.Status)

	// The sandbox's daemon, authenticated with the token the gateway gave.
	fi, err := c.Daemon(sb).WriteFile(ctx, "/app/index.js", "console.log('hello')\n")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(fi.Path, fi.Size)
	// Output:
	// sb-1 acme project-42 ready
	// /app/index.js 21
}
