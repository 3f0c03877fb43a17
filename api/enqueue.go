package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// enqueued is the answer to a successful POST /tasks/{type}: the task, and
// for files:write every task the file set was split into (the first of
// which is the task itself).
type enqueued struct {
	tasks.Enqueued
	Tasks []tasks.Enqueued `json:"tasks,omitempty"`
}

// Limits of enqueue options.
const (
	maxQueueName     = 128
	maxMaxRetry      = 100
	maxIdempotencyKy = 255
)

var queueRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// enqueueOptions reads the optional query parameters queue (one of served)
// and max_retry.
func enqueueOptions(q url.Values, served []string) ([]asynq.Option, *errorBody) {
	var opts []asynq.Option
	for k := range q {
		if k != "queue" && k != "max_retry" {
			return nil, &errorBody{Error: fmt.Sprintf("unknown query parameter %q; known: queue, max_retry", k), Field: k}
		}
	}
	if q.Has("queue") {
		v := q.Get("queue")
		if len(v) > maxQueueName || !queueRE.MatchString(v) {
			return nil, &errorBody{Error: fmt.Sprintf("queue %q must be 1-%d characters of A-Z a-z 0-9 . _ : - starting with a letter or digit", v, maxQueueName), Field: "queue"}
		}
		if !slices.Contains(served, v) {
			return nil, &errorBody{Error: fmt.Sprintf("queue %q is not served by this deployment; served queues: %s", v, strings.Join(served, ", ")), Field: "queue"}
		}
		opts = append(opts, asynq.Queue(v))
	}
	if q.Has("max_retry") {
		v := q.Get("max_retry")
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxMaxRetry {
			return nil, &errorBody{Error: fmt.Sprintf("max_retry %q must be an integer from 0 to %d", v, maxMaxRetry), Field: "max_retry"}
		}
		opts = append(opts, asynq.MaxRetry(n))
	}
	return opts, nil
}

// enqueue is POST /tasks/{type}.
func (a *API) enqueue(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if !slices.Contains(tasks.Types(), typ) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown task type %q; known types: %s", typ, strings.Join(tasks.Types(), ", ")), "type")
		return
	}
	opts, eb := enqueueOptions(r.URL.Query(), a.opts.Queues)
	if eb != nil {
		writeJSON(w, http.StatusBadRequest, eb)
		return
	}
	// A body without Content-Type is refused too: it is what a no-cors
	// fetch or a form sends cross-site without a preflight.
	if ct := r.Header.Get("Content-Type"); ct != "" || r.ContentLength != 0 {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not JSON; send the payload as application/json", ct), "Content-Type")
			return
		}
	}
	gz := false
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		gz = true
	default:
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported; send identity or gzip", enc), "Content-Encoding")
		return
	}
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	do := func(ctx context.Context) (int, []byte) { return a.doEnqueue(ctx, typ, body, gz, opts) }

	key, present := r.Header["Idempotency-Key"]
	if !present {
		status, b := do(r.Context())
		writeAnswer(w, status, b)
		return
	}
	if msg := checkIdempotencyKey(key); msg != "" {
		writeError(w, http.StatusBadRequest, msg, "Idempotency-Key")
		return
	}
	fp := fingerprint(typ, r.URL.Query(), gz, body)
	status, b, replayed, err := a.idempotent(r.Context(), idempotencyKey(scopeOf(r.Context()), typ, key[0]), fp, do)
	if err != nil {
		a.internalError(w, r, "idempotency record", err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeAnswer(w, status, b)
}

// writeAnswer writes an answer of doEnqueue; status 0 (the request's
// context ended first) gets answerCancelled.
func writeAnswer(w http.ResponseWriter, status int, b []byte) {
	if status == 0 {
		answerCancelled(w)
		return
	}
	writeRaw(w, status, b)
}

// readBody reads the body within MaxBody; it answers 413 (or 400) itself
// and returns false when it cannot.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := a.opts.MaxBody
	tooLarge := func() ([]byte, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the %d-byte limit", limit), "")
		return nil, false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case err != nil:
		// Always answer: when the server's body deadline passes, net/http
		// cancels the request's context too, and a handler that wrote
		// nothing would send its default 200.
		status, msg := http.StatusBadRequest, "cannot read the request body: "+err.Error()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			status, msg = http.StatusRequestTimeout, "the request body did not arrive in time; send it faster or smaller"
		}
		w.Header().Set("Connection", "close")
		writeError(w, status, msg, "")
		return nil, false
	}
	return body, true
}

// doEnqueue decodes the payload and enqueues it through the Client. It
// returns the status and JSON body of the answer, or status 0 when the
// client has gone away.
func (a *API) doEnqueue(ctx context.Context, typ string, body []byte, gz bool, opts []asynq.Option) (int, []byte) {
	var headers map[string]string
	if gz {
		headers = map[string]string{tasks.HeaderContentEncoding: tasks.EncodingGzip}
	}
	var (
		list []*tasks.Enqueued
		err  error
	)
	if typ == tasks.TypeFilesWrite {
		// files:write goes through WriteFiles, which validates the whole
		// set and splits it; the payload's own Validate would reject a set
		// above the per-task limits.
		raw, uerr := tasks.Uncompress(body, headers)
		if uerr != nil {
			return errJSON(http.StatusBadRequest, "request body: "+uerr.Error(), "")
		}
		if verr := tasks.CheckJSONUTF8(raw); verr != nil {
			return payloadError(verr)
		}
		var p tasks.FilesWrite
		if jerr := json.Unmarshal(raw, &p); jerr != nil {
			// DecodePayload words JSON errors (and names their field) as the
			// rest of the catalogue does.
			if _, derr := tasks.DecodePayload(typ, raw, nil); derr != nil {
				return payloadError(derr)
			}
			return errJSON(http.StatusBadRequest, "invalid payload: "+jerr.Error(), "payload")
		}
		list, err = a.opts.Client.WriteFiles(ctx, p, opts...)
	} else {
		p, derr := tasks.DecodePayload(typ, body, headers)
		if derr != nil {
			return payloadError(derr)
		}
		var e *tasks.Enqueued
		e, err = a.opts.Client.Enqueue(ctx, p, opts...)
		if e != nil {
			list = []*tasks.Enqueued{e}
		}
	}
	if err != nil {
		var ve *tasks.ValidationError
		if errors.As(err, &ve) {
			return errJSON(http.StatusBadRequest, ve.Error(), ve.Field)
		}
		if ctx.Err() != nil {
			return 0, nil
		}
		a.log.ErrorContext(ctx, "enqueue", "task_type", typ, "enqueued", len(list), "err", err.Error())
		out := struct {
			errorBody
			Tasks []*tasks.Enqueued `json:"tasks,omitempty"`
		}{errorBody{Error: "enqueue " + typ + ": internal error (see the server log)"}, list}
		b, _ := json.Marshal(out)
		return http.StatusInternalServerError, b
	}
	a.registerQueues(ctx, list)
	res := enqueued{Enqueued: *list[0]}
	if typ == tasks.TypeFilesWrite {
		for _, e := range list {
			res.Tasks = append(res.Tasks, *e)
		}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return errJSON(http.StatusInternalServerError, "encode answer: "+err.Error(), "")
	}
	return http.StatusAccepted, b
}

// allQueuesKey is asynq's set of known queues (schema.AsynqQueuesKey).
const allQueuesKey = schema.AsynqQueuesKey

// registerQueues adds the queues of list to asynq's set of queues on every
// enqueue. The asynq client adds a queue only the first time it enqueues to
// it in a process, so after Redis restarted empty, lookups of new tasks
// would answer 404 until the worker restarted.
func (a *API) registerQueues(ctx context.Context, list []*tasks.Enqueued) {
	var qs []any
	for _, e := range list {
		if !slices.Contains(qs, any(e.Queue)) {
			qs = append(qs, e.Queue)
		}
	}
	if err := a.opts.Redis.SAdd(ctx, allQueuesKey, qs...).Err(); err != nil && ctx.Err() == nil {
		a.log.WarnContext(ctx, "register queues", "err", err.Error())
	}
}

func errJSON(status int, msg, field string) (int, []byte) {
	b, _ := json.Marshal(errorBody{Error: msg, Field: field})
	return status, b
}

// payloadError turns an error of DecodePayload into a 400 naming the field.
func payloadError(err error) (int, []byte) {
	var ve *tasks.ValidationError
	if errors.As(err, &ve) {
		return errJSON(http.StatusBadRequest, ve.Error(), ve.Field)
	}
	var pe *tasks.PayloadError
	if errors.As(err, &pe) {
		return errJSON(http.StatusBadRequest, "invalid payload: "+pe.Err.Error(), "payload")
	}
	return errJSON(http.StatusBadRequest, "invalid payload: "+err.Error(), "payload")
}

// Idempotency.
//
// The record of a key is JSON in one Redis string. A request takes the key
// with SET NX of a "pending" record naming itself as owner, enqueues, and
// then swaps its own pending record for the "done" record holding the
// answer (compare-and-set, so a record that expired and was taken by
// someone else meanwhile is left alone). A request that finds a pending
// record waits for it to turn into an answer; one that finds the key
// released (the owner's request failed) takes it itself.

const (
	// pendingTTL bounds how long a request may hold a key while it
	// enqueues; an owner that dies delays its duplicates by at most this.
	pendingTTL = 30 * time.Second
	// replayWait is how long a duplicate waits for the owner's answer
	// before it answers 409.
	replayWait = 10 * time.Second
)

type idemRecord struct {
	State   string          `json:"state"` // "pending" or "done"
	Owner   string          `json:"owner,omitempty"`
	Request string          `json:"request"`
	Status  int             `json:"status,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
}

func checkIdempotencyKey(vals []string) string {
	if len(vals) != 1 {
		return "send one Idempotency-Key header"
	}
	k := vals[0]
	if k == "" || len(k) > maxIdempotencyKy {
		return fmt.Sprintf("Idempotency-Key must be 1-%d characters", maxIdempotencyKy)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "Idempotency-Key must be printable ASCII"
		}
	}
	return ""
}

// idempotencyKey is the Redis key of an Idempotency-Key
// (schema.IdempotencyKey).
func idempotencyKey(scope, typ, key string) string { return schema.IdempotencyKey(scope, typ, key) }

// fingerprint identifies the request a key was first used with.
func fingerprint(typ string, q url.Values, gz bool, body []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%t\x00", typ, q.Encode(), gz)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// idempotent runs do at most once per key within IdempotencyTTL and
// returns its answer, or the answer recorded by an earlier request.
func (a *API) idempotent(ctx context.Context, key, fp string, do func(context.Context) (int, []byte)) (status int, body []byte, replayed bool, err error) {
	rdb := a.opts.Redis
	pending, _ := json.Marshal(idemRecord{State: "pending", Owner: uuid.NewString(), Request: fp})
	deadline := time.Now().Add(replayWait)
	delay := 5 * time.Millisecond
	for {
		won, err := rdb.SetNX(ctx, key, pending, pendingTTL).Result()
		if err != nil {
			return 0, nil, false, err
		}
		if won {
			// Enqueue within the pending record's lifetime, so the record
			// cannot expire under a request that is still enqueueing.
			dctx, cancel := context.WithTimeout(ctx, pendingTTL/2)
			status, body := do(dctx)
			cancel()
			// The record must be settled even when the client has gone.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer scancel()
			next, ttl := "", time.Duration(0)
			if status == http.StatusAccepted {
				b, _ := json.Marshal(idemRecord{State: "done", Request: fp, Status: status, Body: body})
				next, ttl = string(b), a.opts.IdempotencyTTL
			}
			if _, err := schema.CompareAndSet(sctx, rdb, key, string(pending), next, ttl); err != nil {
				a.log.WarnContext(ctx, "settle idempotency record", "err", err.Error())
			}
			return status, body, false, nil
		}
		raw, err := rdb.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // released or expired just now: try to take it
		}
		if err != nil {
			return 0, nil, false, err
		}
		var rec idemRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return 0, nil, false, fmt.Errorf("idempotency record %s: %w", key, err)
		}
		if rec.Request != fp {
			s, b := errJSON(http.StatusUnprocessableEntity, "this Idempotency-Key was first used with a different request (type, query or body); use a new key for a new request", "Idempotency-Key")
			return s, b, false, nil
		}
		if rec.State == "done" {
			return rec.Status, rec.Body, true, nil
		}
		if time.Now().After(deadline) {
			s, b := errJSON(http.StatusConflict, "a request with this Idempotency-Key is still in progress; retry later", "Idempotency-Key")
			return s, b, false, nil
		}
		if backoff.Sleep(ctx, delay) != nil {
			return 0, nil, false, nil
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}
