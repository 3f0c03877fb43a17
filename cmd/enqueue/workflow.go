package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// workflowDoc is the file `enqueue workflow --file` reads, in JSON or YAML:
//
//	{"namespace": "acme", "name": "shop", "steps": [{"type": "files:write", "payload": {...}}]}
//
// namespace and name are optional (the flags win over them); every step
// names a task type and carries that type's payload without namespace and
// name.
type workflowDoc struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Steps     []workflowStep `json:"steps"`
}

type workflowStep struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// yamlWorkflowDoc mirrors workflowDoc for YAML, whose payloads are
// converted to JSON.
type yamlWorkflowDoc struct {
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	Steps     []struct {
		Type    string    `yaml:"type"`
		Payload yaml.Node `yaml:"payload"`
	} `yaml:"steps"`
}

// readWorkflow reads the workflow document at file ("-" is stdin). The
// format follows the extension: .json is JSON, .yaml/.yml is YAML; stdin
// and other names are JSON when the text starts with "{", else YAML.
func readWorkflow(file string, stdin io.Reader) (*workflowDoc, error) {
	var (
		b   []byte
		err error
	)
	if file == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usagef("--file: %v", err)
	}
	isJSON := bytes.HasPrefix(bytes.TrimSpace(b), []byte("{"))
	switch strings.ToLower(filepath.Ext(file)) {
	case ".json":
		isJSON = true
	case ".yaml", ".yml":
		isJSON = false
	}
	var doc *workflowDoc
	if isJSON {
		doc, err = decodeJSONWorkflow(b)
	} else {
		doc, err = decodeYAMLWorkflow(b)
	}
	if err != nil {
		return nil, usagef("--file %s: %v", file, err)
	}
	if len(doc.Steps) == 0 {
		return nil, usagef("--file %s: no steps", file)
	}
	for i, s := range doc.Steps {
		if strings.TrimSpace(s.Type) == "" {
			return nil, usagef("--file %s: step %d has no type", file, i+1)
		}
	}
	return doc, nil
}

func decodeJSONWorkflow(b []byte) (*workflowDoc, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var doc workflowDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON document")
	}
	return &doc, nil
}

func decodeYAMLWorkflow(b []byte) (*workflowDoc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var y yamlWorkflowDoc
	if err := dec.Decode(&y); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	doc := &workflowDoc{Namespace: y.Namespace, Name: y.Name}
	for i, s := range y.Steps {
		var v any
		if s.Payload.Kind != 0 {
			if err := s.Payload.Decode(&v); err != nil {
				return nil, fmt.Errorf("step %d payload: %w", i+1, err)
			}
		}
		raw, err := json.Marshal(jsonable(v))
		if err != nil {
			return nil, fmt.Errorf("step %d payload: %w", i+1, err)
		}
		if v == nil {
			raw = nil
		}
		doc.Steps = append(doc.Steps, workflowStep{Type: s.Type, Payload: raw})
	}
	return doc, nil
}

// jsonable turns what YAML decodes into something encoding/json accepts:
// mappings with non-string keys get their keys printed.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	default:
		return v
	}
}
