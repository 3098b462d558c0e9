package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/flint-boot/flint/internal/yamlerr"
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
		return nil, readError(err)
	}
	return Parse(path, data)
}

// readError says what to do about a config file that cannot be read: one
// that exists but is not readable needs its mode or another user, not
// another file.
func readError(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("read config: %w (the file exists but this user may not read it: run flint as a user that can, or fix its owner or mode, e.g. chmod 0640 and chgrp to flint's group)", err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read config: %w (pass an existing file with --config)", err)
	case errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("read config: %w (that is a directory: pass the config file in it with --config)", err)
	}
	return fmt.Errorf("read config: %w (pass a readable config file with --config)", err)
}

// Parse parses and validates config text; source names it in messages.
// Keys the config does not take and values of the wrong kind are reported
// each at its line, alongside what the other checks find in the rest.
func Parse(source string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Source: source, Problems: yamlProblems(err, data)}
	}
	if len(root.Content) == 0 {
		return nil, &Error{Source: source, Problems: []Problem{{Field: "(file)", Message: "config is empty"}}}
	}
	doc := root.Content[0]
	lines := map[string]int{}
	indexLines(doc, "", lines)
	shapeProblems := checkShape(doc)
	if doc.Kind != yaml.MappingNode && doc.Kind != yaml.AliasNode {
		return nil, &Error{Source: source, Problems: shapeProblems}
	}
	cfg := &Config{}
	if err := doc.Decode(cfg); err != nil {
		return nil, &Error{Source: source, Problems: append(shapeProblems, yamlProblems(err, data)...)}
	}
	cfg.Source = source
	for i := range cfg.Machines {
		cfg.Machines[i].Line = lines[fmt.Sprintf("machines[%d]", i)]
	}
	cfg.lines = lines
	err := cfg.validate(lines)
	if len(shapeProblems) == 0 {
		if err != nil {
			return nil, err
		}
		return cfg, nil
	}
	// A value removed for its shape would also fail the checks as missing:
	// report it once, in the shape's words.
	all := &Error{Source: source, Problems: shapeProblems}
	if cerr, ok := err.(*Error); ok {
		for _, p := range cerr.Problems {
			if !coveredBy(p.Field, shapeProblems) {
				all.Problems = append(all.Problems, p)
			}
		}
	}
	// In file order; those with no line (about the file as a whole) last.
	sort.SliceStable(all.Problems, func(i, j int) bool {
		a, b := all.Problems[i].Line, all.Problems[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	return nil, all
}

// coveredBy reports whether field is, or lies under or above, a field
// already reported.
func coveredBy(field string, ps []Problem) bool {
	for _, p := range ps {
		if field == p.Field || strings.HasPrefix(field, p.Field+".") || strings.HasPrefix(field, p.Field+"[") ||
			strings.HasPrefix(p.Field, field+".") || strings.HasPrefix(p.Field, field+"[") {
			return true
		}
	}
	return false
}

// yamlProblems turns a yaml.v3 error into problems at the lines to edit
// (internal/yamlerr, shared with the profiles' Butane).
func yamlProblems(err error, data []byte) []Problem {
	var out []Problem
	for _, it := range yamlerr.Explain(err, data) {
		out = append(out, Problem{Field: "(yaml)", Line: it.Line, Message: it.Message})
	}
	return out
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
