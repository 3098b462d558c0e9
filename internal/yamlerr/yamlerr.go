// Package yamlerr turns yaml.v3 errors into problems at the line a person
// edits, in words that say what to do. flint's config and its profiles (the
// Butane they render) both go through it, so a YAML mistake reads the same
// in both.
//
// yaml.v3 reports a parser error ("did not find expected key") at the line
// where the enclosing block or flow collection began: for a key indented off
// its siblings, that can be many lines above the mistake. Parsing ever longer
// prefixes of the document finds the first line at which the same error
// appears, which is the line to fix. An unclosed [ or { is reported at its
// opening line, which is the line to fix already.
package yamlerr

import (
	"bytes"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Item is one YAML problem: Line is 1-based (0: unknown).
type Item struct {
	Line    int
	Message string
}

// lineRE finds the "line N: message" items yaml.v3 puts in its errors.
var lineRE = regexp.MustCompile(`line (\d+): ([^\n]*)`)

// Explain turns a yaml.v3 error about data into problems, each at its line.
func Explain(err error, data []byte) []Item {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var out []Item
		for _, e := range te.Errors {
			out = append(out, one(e, data))
		}
		return out
	}
	msg := err.Error()
	if ms := lineRE.FindAllStringSubmatch(msg, -1); len(ms) > 1 {
		var out []Item
		for _, m := range ms {
			out = append(out, one(m[0], data))
		}
		return out
	}
	return []Item{one(msg, data)}
}

// one explains a single "yaml: line N: message".
func one(msg string, data []byte) Item {
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimSpace(m[2])
	}
	if strings.HasPrefix(msg, "did not find expected") {
		// A parser error: yaml.v3 numbers its line from 0.
		line++
		if n := bytes.Count(bytes.TrimRight(data, "\n"), []byte("\n")) + 1; line > n {
			line = n
		}
	}
	switch msg {
	case "did not find expected ',' or ']'":
		msg = "a [ list opened here is not closed: add the ] (or a , between its items)"
	case "did not find expected ',' or '}'":
		msg = "a { mapping opened here is not closed: add the } (or a , between its items)"
	case "did not find expected key", "did not find expected '-' indicator":
		line = firstFailing(data, line, msg)
		msg = "this line is not indented like the keys above it: line it up with its siblings"
	}
	return Item{Line: line, Message: msg}
}

// firstFailing is the first line (from line from on) at which a prefix of
// data fails to parse with the error msg: where the mistake is, rather than
// where its block began. It returns from when no prefix fails that way.
func firstFailing(data []byte, from int, msg string) int {
	end, line := 0, 0
	for end < len(data) {
		next := bytes.IndexByte(data[end:], '\n')
		if next < 0 {
			end = len(data)
		} else {
			end += next + 1
		}
		line++
		if line < from {
			continue
		}
		var n yaml.Node
		if err := yaml.Unmarshal(data[:end], &n); err != nil && strings.Contains(err.Error(), msg) {
			return line
		}
	}
	return from
}

// Lines rewrites "at line N" inside a message (yaml.v3's "mapping key "x"
// already defined at line N") with what to say instead: where maps a line
// of data to the text that names it for people.
func Lines(msg string, where func(line int) string) string {
	return atLineRE.ReplaceAllStringFunc(msg, func(s string) string {
		n, err := strconv.Atoi(s[len("at line "):])
		if err != nil {
			return s
		}
		return "at " + where(n)
	})
}

var atLineRE = regexp.MustCompile(`at line \d+`)
