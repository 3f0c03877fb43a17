package api_test

import (
	"context"
	"log"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/api"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/tasks"
)

// ExampleNew serves the API next to other handlers on one listener.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	a, err := api.New(api.Config{
		Client:     tasks.NewClient(rdb),
		Redis:      rdb,
		Store:      events.NewStore(rdb, events.StoreConfig{}),
		Tokens:     []secret.Secret{secret.New("s3cret-token")},
		ListenAddr: "0.0.0.0:8080",
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(api.Prefix+"/", a)
	srv := &http.Server{Addr: "0.0.0.0:8080", Handler: mux}
	srv.RegisterOnShutdown(func() { _ = a.Close() })
	go func() { _ = srv.ListenAndServe() }()
	_ = srv.Shutdown(context.Background())
}
