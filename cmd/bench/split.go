package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"time"
)

// splitGateway fronts the gateways of several provider processes as one,
// so one worker can watch more sandboxes than one provider process has
// file descriptors for. A request naming a sandbox (find, find-or-create,
// create with a name) goes to the provider its name hashes to; a request by
// sandbox id goes to each provider in turn until one does not answer 404.
// Daemon traffic does not pass here: a sandbox's record carries its own
// provider's daemon URL.
type splitGateway struct {
	backends []*provider
	key      string
	url      string
	srv      *http.Server
	hc       *http.Client
}

func startSplit(backends []*provider) (*splitGateway, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	s := &splitGateway{backends: backends, key: "local_" + hex.EncodeToString(b), url: "http://" + l.Addr().String(),
		hc: &http.Client{Timeout: time.Minute}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

func (s *splitGateway) close() { _ = s.srv.Close() }

// requests sums the requests finished at every backend.
func (s *splitGateway) requests() (int64, error) {
	var sum int64
	for _, p := range s.backends {
		n, err := p.requests()
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

func (s *splitGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-ComputeSDK-API-Key") != s.key {
		http.Error(w, `{"error":"invalid or missing X-ComputeSDK-API-Key"}`, http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	order := make([]int, len(s.backends))
	for i := range order {
		order[i] = i
	}
	var named struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(body, &named) == nil && named.Name != "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(named.Name))
		order = []int{int(h.Sum32() % uint32(len(s.backends)))}
	}
	for k, i := range order {
		resp, err := s.forward(r, body, s.backends[i])
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if resp.StatusCode == http.StatusNotFound && k < len(order)-1 {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			continue
		}
		for h, v := range resp.Header {
			w.Header()[h] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
}

func (s *splitGateway) forward(r *http.Request, body []byte, p *provider) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.URL+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	req.Header.Set("X-ComputeSDK-API-Key", p.Key)
	return s.hc.Do(req)
}
