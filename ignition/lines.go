package ignition

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// Problems Butane and YAML report point at lines of the rendered Butane, which
// an operator never sees. To point at the template line instead, every text
// node of the parsed templates is instrumented: a marker naming the
// template file and line is put in front of each source line it emits. After
// execution the markers are stripped again, leaving the exact output of the
// plain template plus, for every output line, where it came from. A line
// produced by an action ({{.X}} with newlines, a template call) belongs to
// the last marker before it: the line of the action.

// markerByte delimits markers. NUL cannot appear in YAML, so it never
// collides with real output.
const markerByte = 0

// srcLoc is a template file and line.
type srcLoc struct {
	file string // template name, e.g. "server.yaml"
	line int
}

// lineMap maps each line of the rendered output (index 0 = line 1) to where
// it came from.
type lineMap []srcLoc

// at returns the source of rendered line n (1-based); ok is false when unknown.
func (m lineMap) at(n int) (srcLoc, bool) {
	if n < 1 || n > len(m) || m[n-1].file == "" {
		return srcLoc{}, false
	}
	return m[n-1], true
}

// instrumented is a parsed template set whose text nodes carry markers.
type instrumented struct {
	tmpl *template.Template
	locs []srcLoc // marker index -> location
}

// instrument adds markers to every template in t, in place.
func instrument(t *template.Template) *instrumented {
	in := &instrumented{tmpl: t}
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		in.walk(tt.Tree, tt.Tree.Root)
	}
	return in
}

func (in *instrumented) walk(tree *parse.Tree, n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			in.walk(tree, c)
		}
	case *parse.IfNode:
		in.walk(tree, n.List)
		in.walk(tree, n.ElseList)
	case *parse.RangeNode:
		in.walk(tree, n.List)
		in.walk(tree, n.ElseList)
	case *parse.WithNode:
		in.walk(tree, n.List)
		in.walk(tree, n.ElseList)
	case *parse.TextNode:
		in.mark(tree, n)
	}
}

// mark rewrites a text node: a marker before its first byte and after each
// newline (for the line that follows).
func (in *instrumented) mark(tree *parse.Tree, n *parse.TextNode) {
	file, line := nodeLine(tree, n)
	if file == "" || len(n.Text) == 0 {
		return
	}
	var b bytes.Buffer
	b.Write(in.marker(file, line))
	for _, c := range n.Text {
		b.WriteByte(c)
		if c == '\n' {
			line++
			b.Write(in.marker(file, line))
		}
	}
	n.Text = b.Bytes()
}

func (in *instrumented) marker(file string, line int) []byte {
	in.locs = append(in.locs, srcLoc{file: file, line: line})
	return []byte(fmt.Sprintf("%c%d%c", markerByte, len(in.locs)-1, markerByte))
}

// nodeLine is the template file and line where n starts.
func nodeLine(tree *parse.Tree, n parse.Node) (string, int) {
	// ErrorContext gives "NAME:LINE:COL"; the name may itself contain ':'.
	loc, _ := tree.ErrorContext(n)
	i := strings.LastIndexByte(loc, ':')
	if i < 0 {
		return "", 0
	}
	j := strings.LastIndexByte(loc[:i], ':')
	if j < 0 {
		return "", 0
	}
	line, err := strconv.Atoi(loc[j+1 : i])
	if err != nil {
		return "", 0
	}
	return loc[:j], line
}

// execute runs the named template and returns the clean output with its line map.
func (in *instrumented) execute(name string, data any) ([]byte, lineMap, error) {
	var raw bytes.Buffer
	if err := in.tmpl.ExecuteTemplate(&raw, name, data); err != nil {
		return nil, nil, err
	}
	return in.strip(raw.Bytes())
}

// strip removes the markers and records each output line's source.
func (in *instrumented) strip(raw []byte) ([]byte, lineMap, error) {
	out := make([]byte, 0, len(raw))
	var lines lineMap
	var cur srcLoc
	lineStart := true // the next output byte starts a line
	for i := 0; i < len(raw); i++ {
		if raw[i] == markerByte {
			end := bytes.IndexByte(raw[i+1:], markerByte)
			if end < 0 {
				return nil, nil, fmt.Errorf("rendered output contains a NUL byte")
			}
			idx, err := strconv.Atoi(string(raw[i+1 : i+1+end]))
			if err != nil || idx < 0 || idx >= len(in.locs) {
				return nil, nil, fmt.Errorf("rendered output contains a NUL byte")
			}
			cur = in.locs[idx]
			i += end + 1
			continue
		}
		if lineStart {
			lines = append(lines, cur)
			lineStart = false
		}
		out = append(out, raw[i])
		if raw[i] == '\n' {
			lineStart = true
		}
	}
	// A last line without a newline still counts; an empty last line (after a
	// final newline) gets the current location, for errors at end of input.
	if lineStart {
		lines = append(lines, cur)
	}
	return out, lines, nil
}
