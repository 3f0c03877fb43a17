package handlers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// FilesResult is the result of files:write. Pending lists the paths a retry
// still has to write; Failed the paths that no retry can write.
type FilesResult struct {
	Written int         `json:"written"`
	Deleted int         `json:"deleted"`
	Bytes   int64       `json:"bytes"`
	Failed  []PathError `json:"failed,omitempty"`
	Pending []string    `json:"pending,omitempty"`
	Files   int         `json:"files"`
}

// PathError is a per-path failure.
type PathError struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

func (h *Handlers) filesWrite(ctx context.Context, t *Task[tasks.FilesWrite]) (any, error) {
	p := t.Payload
	// process normally holds the project lease already (leaseFirst): the
	// files are decoded only once the project is free.
	//
	// A retry sends only the paths an earlier attempt left pending. A task
	// handed back at shutdown (which asynq does not count as a retry) sends
	// everything again, which is correct because writes are idempotent, and
	// keeps the first attempt of every task free of the extra read.
	var prev *FilesResult
	if t.Retried > 0 {
		prev = previousResult[FilesResult](ctx, h, t.Queue, t.ID)
	}
	if !t.leased {
		lctx, release, err := h.lock(ctx, p.Project, t.ID)
		if err != nil {
			return nil, err
		}
		defer release()
		ctx = lctx
	}
	return h.writeFiles(ctx, p, prev)
}

// isPermanent reports whether err is one no retry can fix.
func isPermanent(err error) bool { return errors.Is(classify(err), asynq.SkipRetry) }

// writeFiles sends the files in one batch. Only the paths a previous attempt
// left pending are sent again. Paths the batch could not write are retried
// one by one, which tells a permanent refusal (a 4xx, such as a path that
// escapes the sandbox) from a transient one. Binary files travel as staged
// base64 text and are decoded in place afterwards (see stagedFile).
func (h *Handlers) writeFiles(ctx context.Context, p tasks.FilesWrite, prev *FilesResult) (*FilesResult, error) {
	files := p.Files
	res := &FilesResult{Files: len(p.Files)}
	if prev != nil && len(prev.Pending) > 0 {
		want := make(map[string]bool, len(prev.Pending))
		for _, path := range prev.Pending {
			want[path] = true
		}
		files = nil
		for _, f := range p.Files {
			if want[f.Path] {
				files = append(files, f)
			}
		}
		res.Written, res.Deleted, res.Bytes = prev.Written, prev.Deleted, prev.Bytes
	}
	if len(files) == 0 {
		return res, nil
	}
	ops := make([]fileOp, len(files))
	for i, f := range files {
		ops[i] = opFor(f)
	}
	err := h.withSandbox(ctx, p.Project, boolOr(p.Ensure, true), func(_ *gateway.Sandbox, d Daemon) error {
		return applyFiles(ctx, d, ops, res)
	})
	sort.Strings(res.Pending)
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Path < res.Failed[j].Path })
	if err != nil {
		// Nothing new is known for sure: leave the previous result (and so
		// the previous pending list) in place for the next attempt.
		return nil, err
	}
	switch {
	case len(res.Failed) > 0:
		return res, Permanentf("%d of %d files refused: %s", len(res.Failed), res.Files, summarize(res.Failed))
	case len(res.Pending) > 0:
		return res, fmt.Errorf("%d of %d files not written yet, will retry: %s", len(res.Pending), res.Files, strings.Join(head(res.Pending, 5), ", "))
	}
	return res, nil
}

// fileOp is one file of an attempt and the batch operation that carries
// it: the file itself, or for a binary file its staged base64 text.
type fileOp struct {
	f    tasks.File
	wire gateway.BatchFile
}

func opFor(f tasks.File) fileOp {
	switch {
	case f.Delete:
		return fileOp{f, gateway.BatchFile{Path: f.Path, Operation: gateway.BatchDelete}}
	case f.IsBinary():
		return fileOp{f, gateway.BatchFile{Path: stage(f), Operation: gateway.BatchWrite, Content: f.Content}}
	}
	return fileOp{f, gateway.BatchFile{Path: f.Path, Operation: gateway.BatchWrite, Content: f.Content}}
}

// applyFiles sends ops as one batch, retries alone what the batch did not
// confirm, decodes the staged binary files, and records each outcome in
// res. It returns an error only when nothing is known about the batch (it
// failed as a whole) or ctx ended; every other failure is per path.
func applyFiles(ctx context.Context, d Files, ops []fileOp, res *FilesResult) error {
	batch := make([]gateway.BatchFile, len(ops))
	for i, op := range ops {
		batch[i] = op.wire
	}
	results, err := d.BatchFiles(ctx, batch)
	if err != nil {
		return err
	}
	done := make(map[string]bool, len(results))
	for _, r := range results {
		if r.Success {
			done[r.Path] = true
		}
	}
	var staged []tasks.File
	for _, op := range ops {
		var err error
		if !done[op.wire.Path] {
			// The batch did not confirm this path: try it alone.
			err = sendOne(ctx, d, op.wire)
		}
		if err == nil && op.f.IsBinary() {
			staged = append(staged, op.f)
			continue
		}
		if err := record(ctx, res, op.f, err); err != nil {
			return err
		}
	}
	for i, err := range decodeStaged(ctx, d, staged) {
		if err := record(ctx, res, staged[i], err); err != nil {
			return err
		}
	}
	return nil
}

// record counts f as done, failed or pending by err; it returns an error
// only when ctx has ended.
func record(ctx context.Context, res *FilesResult, f tasks.File, err error) error {
	switch {
	case err == nil:
		count(res, f)
	case ctx.Err() != nil:
		return ctxErr(ctx)
	case isPermanent(err):
		res.Failed = append(res.Failed, PathError{Path: f.Path, Error: errorText(err)})
	default:
		res.Pending = append(res.Pending, f.Path)
	}
	return nil
}

// stage is the sandbox path of a binary file's staged base64 text.
func stage(f tasks.File) string {
	s, _ := stagedNames(f)
	return s
}

// sendOne performs one batch operation on its own.
func sendOne(ctx context.Context, d Files, op gateway.BatchFile) error {
	if op.Operation == gateway.BatchDelete {
		err := d.DeleteFile(ctx, op.Path)
		if errors.Is(err, gateway.ErrNotFound) {
			return nil
		}
		return err
	}
	_, err := d.WriteFile(ctx, op.Path, op.Content)
	return err
}

func count(res *FilesResult, f tasks.File) {
	if f.Delete {
		res.Deleted++
		return
	}
	res.Written++
	res.Bytes += int64(f.Size())
}

func summarize(fs []PathError) string {
	parts := make([]string, 0, 3)
	for i, f := range fs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(fs)-3))
			break
		}
		parts = append(parts, f.Path+": "+f.Error)
	}
	return strings.Join(parts, "; ")
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// errorText is the message of err without its Go wrapping, for results.
func errorText(err error) string {
	var apiErr *gateway.APIError
	if errors.As(err, &apiErr) && apiErr.Message != "" {
		return fmt.Sprintf("%s (HTTP %d)", apiErr.Message, apiErr.StatusCode)
	}
	return err.Error()
}
