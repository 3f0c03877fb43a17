package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hibiken/asynq"
)

// Step is one step of a workflow: a task type and its payload. The payload
// may leave out namespace and name; it gets the workflow's. If it names a
// project, it must be the workflow's.
type Step struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// NewStep makes a step of p. The project fields of p may be left empty.
func NewStep(p Payload) (Step, error) {
	if isNil(p) {
		return Step{}, errors.New("tasks: NewStep of a nil payload")
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return Step{}, fmt.Errorf("encode %s step: %w", p.TypeName(), err)
	}
	return Step{Type: p.TypeName(), Payload: raw}, nil
}

// WorkflowRun runs steps of the project in order, one after another.
type WorkflowRun struct {
	Project
	Steps []Step `json:"steps"`
}

func (WorkflowRun) TypeName() string { return TypeWorkflowRun }

// stepTypes are the types a workflow step may have, in catalogue order.
var stepTypes = []string{
	TypeSandboxEnsure, TypeSandboxDestroy, TypeFilesWrite, TypeServerStart,
	TypeServerStop, TypeServerRestart, TypeCommandRun, TypeEnvUpdate,
}

func (p WorkflowRun) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	if len(p.Steps) == 0 {
		return invalid("steps", "must have at least one step")
	}
	if len(p.Steps) > MaxWorkflowSteps {
		return invalid("steps", "has %d steps, at most %d are allowed", len(p.Steps), MaxWorkflowSteps)
	}
	for i := range p.Steps {
		if _, err := p.StepPayload(i); err != nil {
			return err
		}
	}
	return nil
}

// StepPayload decodes step i as its type with the workflow's project filled
// in, normalized and validated. Errors name the step's field, e.g.
// "steps[2].payload.slug".
func (p WorkflowRun) StepPayload(i int) (Payload, error) {
	if i < 0 || i >= len(p.Steps) {
		return nil, fmt.Errorf("tasks: workflow has no step %d", i)
	}
	s := p.Steps[i]
	field := fmt.Sprintf("steps[%d]", i)
	if !slices.Contains(stepTypes, s.Type) {
		return nil, invalid(field+".type", "%s is not a step type (one of %s)", quote(s.Type), strings.Join(stepTypes, ", "))
	}
	raw := bytes.TrimSpace(s.Payload)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return nil, invalid(field+".payload", "must be a JSON object")
	}
	var own Project
	if err := json.Unmarshal(raw, &own); err != nil {
		return nil, jsonError(field+".payload", err)
	}
	wp := p.Project.Normalize()
	if own.Namespace != "" && own.Normalize().Namespace != wp.Namespace {
		return nil, invalid(field+".payload.namespace", "%s differs from the workflow's %s", quote(own.Namespace), quote(wp.Namespace))
	}
	if own.Name != "" && own.Name != wp.Name {
		return nil, invalid(field+".payload.name", "%s differs from the workflow's %s", quote(own.Name), quote(wp.Name))
	}
	// The workflow's project replaces whatever the step said (nothing, an
	// empty string, or the same project).
	fields := make(map[string]json.RawMessage)
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, jsonError(field+".payload", err)
	}
	fields["namespace"], _ = json.Marshal(wp.Namespace)
	fields["name"], _ = json.Marshal(wp.Name)
	merged, err := json.Marshal(fields)
	if err != nil {
		return nil, jsonError(field+".payload", err)
	}
	sp, err := payloadTypes[s.Type](merged)
	if err != nil {
		return nil, jsonError(field+".payload", err)
	}
	if err := sp.Validate(); err != nil {
		return nil, prefixed(field+".payload", err)
	}
	return sp, nil
}

func (WorkflowRun) Options() []asynq.Option {
	return defaultOptions(QueueDefault, TimeoutWorkflowRun)
}

// normalize fills every valid step's payload with the workflow's project
// and normalizes it; invalid steps are left for Validate to report.
func (p WorkflowRun) normalize() Payload {
	p.Project = p.Project.Normalize()
	if p.Steps == nil {
		return p
	}
	steps := slices.Clone(p.Steps)
	for i := range steps {
		sp, err := p.StepPayload(i)
		if err != nil {
			continue
		}
		if raw, err := json.Marshal(sp); err == nil {
			steps[i].Payload = raw
		}
	}
	p.Steps = steps
	return p
}

// decodeFunc decodes JSON into a payload of its type and normalizes it. It
// does not validate.
type decodeFunc func(raw []byte) (Payload, error)

func decodeAs[P Payload](raw []byte) (Payload, error) {
	var p P
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	return normalize(p), nil
}

// payloadTypes maps every type name of the catalogue to its decoder.
var payloadTypes = map[string]decodeFunc{
	TypeSandboxEnsure:        decodeAs[SandboxEnsure],
	TypeSandboxDestroy:       decodeAs[SandboxDestroy],
	TypeFilesWrite:           decodeAs[FilesWrite],
	TypeServerStart:          decodeAs[ServerStart],
	TypeServerStop:           decodeAs[ServerStop],
	TypeServerRestart:        decodeAs[ServerRestart],
	TypeCommandRun:           decodeAs[CommandRun],
	TypeEnvUpdate:            decodeAs[EnvUpdate],
	TypeWorkflowRun:          decodeAs[WorkflowRun],
	TypeMaintenanceCleanup:   decodeAs[MaintenanceCleanup],
	TypeMaintenanceReconcile: decodeAs[MaintenanceReconcile],
}

// Types returns the type names of the catalogue, sorted.
func Types() []string {
	names := make([]string, 0, len(payloadTypes))
	for n := range payloadTypes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// jsonError turns a JSON decoding error into a *ValidationError under
// prefix ("" for the payload itself).
func jsonError(prefix string, err error) error {
	join := func(field string) string {
		switch {
		case prefix == "":
			return field
		case field == "":
			return prefix
		}
		return prefix + "." + field
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "payload"
			if prefix != "" {
				field = ""
			}
		}
		return invalid(join(field), "cannot use JSON %s as %s", te.Value, te.Type)
	}
	field := join("")
	if field == "" {
		field = "payload"
	}
	return invalid(field, "is not valid JSON: %v", err)
}
