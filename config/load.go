package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config, located by field path and line.
type Problem struct {
	Field   string // e.g. "machines[2].ip"
	Line    int    // 0 when unknown
	Message string
}

// Located formats the problem as "file:line: field: message", the form editors jump to.
func (p Problem) Located(source string) string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", source, p.Line, p.Field, p.Message)
	}
	return fmt.Sprintf("%s: %s: %s", source, p.Field, p.Message)
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Field, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Field, p.Message)
}

// Error holds every problem that stops a config from being used.
type Error struct {
	Source   string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		fmt.Fprintf(&b, "%s: 1 problem:", e.Source)
	} else {
		fmt.Fprintf(&b, "%s: %d problems:", e.Source, len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Located(e.Source))
	}
	return b.String()
}

// LoadFile reads, parses and validates a config file.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w (pass an existing file with --config)", err)
	}
	return Parse(path, data)
}

// Parse parses and validates config text; source names it in messages.
func Parse(source string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Source: source, Problems: []Problem{yamlProblem(err)}}
	}
	if len(root.Content) == 0 {
		return nil, &Error{Source: source, Problems: []Problem{{Field: "(file)", Message: "config is empty"}}}
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return nil, &Error{Source: source, Problems: []Problem{yamlProblem(err)}}
	}
	cfg.Source = source
	lines := map[string]int{}
	indexLines(root.Content[0], "", lines)
	for i := range cfg.Machines {
		cfg.Machines[i].Line = lines[fmt.Sprintf("machines[%d]", i)]
	}
	cfg.lines = lines
	if err := cfg.validate(lines); err != nil {
		return nil, err
	}
	return cfg, nil
}

// yamlProblem turns a yaml.v3 error ("yaml: line 4: ...") into a Problem.
func yamlProblem(err error) Problem {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return Problem{Field: "(yaml)", Line: line, Message: msg}
}

// indexLines records the line of every field path: "dhcp.pool.start", "machines[1].ip".
func indexLines(n *yaml.Node, path string, out map[string]int) {
	if path != "" {
		out[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line
			indexLines(v, p, out)
			out[p] = k.Line // the key's line reads better than the value's for scalars and blocks alike
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			indexLines(c, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}
