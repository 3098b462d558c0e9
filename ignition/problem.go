package ignition

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/coreos/vcontext/report"

	"github.com/flint-boot/flint/internal/yamlerr"
	"github.com/flint-boot/flint/profiles"
)

// ProblemKind sorts problems by what the operator has to fix.
type ProblemKind string

const (
	KindProfile ProblemKind = "profile" // a template, or the Butane/Ignition it produces
	KindAsset   ProblemKind = "asset"   // a file missing from the assets directory
	KindMachine ProblemKind = "machine" // config or credentials of one machine
)

// Problem is one reason a machine's config cannot be rendered.
type Problem struct {
	Kind    ProblemKind
	Machine string // hostname
	Profile string // profile name ("server")
	// File and Line locate the template line at fault: File is the template's
	// origin (the overlay path, or "embedded:server.yaml"); Line is 0 when
	// unknown.
	File    string
	Line    int
	Message string
	// Rendered is the offending line of the rendered Butane, with data URLs
	// elided so no secret reaches a log.
	Rendered string
}

// String formats the problem as "FILE:LINE: MACHINE: MESSAGE", the form
// editors jump to; the profile is named when the line is in a shared part.
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		fmt.Fprintf(&b, "%s: ", p.File)
	}
	if p.Machine != "" {
		b.WriteString(p.Machine)
		if p.Profile != "" && !strings.HasSuffix(p.File, p.Profile+profiles.Ext) {
			fmt.Fprintf(&b, " (profile %s)", p.Profile)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ProfileError is a render that failed because of the profile: the template,
// the Butane it produced, or the resulting Ignition config.
type ProfileError struct {
	Problems []Problem
	// Butane is the rendered Butane YAML (with secrets) for context; never log it.
	Butane []byte
}

func (e *ProfileError) Error() string {
	var parts []string
	for _, p := range e.Problems {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, "; ")
}

// dataURLRE matches data URLs, to elide secrets from rendered lines.
var dataURLRE = regexp.MustCompile(`data:[^"'\s]*`)

func redact(line string) string {
	return dataURLRE.ReplaceAllStringFunc(line, func(s string) string {
		return fmt.Sprintf("data:...(%d bytes elided)", len(s))
	})
}

// locator turns positions in the rendered Butane into Problems.
type locator struct {
	set      *profiles.Set
	lines    lineMap
	rendered []byte
	base     Problem // Kind, Machine, Profile
}

// at builds a problem located at rendered line n (1-based; 0 = unknown).
func (l *locator) at(n int, msg string) Problem {
	p := l.base
	p.Message = msg
	if src, ok := l.lines.at(n); ok {
		p.File, p.Line = l.origin(src.file), src.line
	} else {
		p.File = l.origin(l.base.Profile + profiles.Ext)
	}
	if n > 0 {
		if rl := strings.Split(string(l.rendered), "\n"); n <= len(rl) {
			p.Rendered = redact(strings.TrimSpace(rl[n-1]))
		}
	}
	return p
}

func (l *locator) origin(file string) string {
	if f, ok := l.set.Lookup(file); ok {
		return f.Origin
	}
	return file
}

// fromReport converts every entry of a Butane report. Butane reports the
// YAML path of the problem and its position in the rendered YAML.
func (l *locator) fromReport(r report.Report) []Problem {
	var out []Problem
	for _, e := range r.Entries {
		line := 0
		if e.Marker.StartP != nil {
			line = int(e.Marker.StartP.Line)
		}
		msg := e.Message
		if e.Context.Len() > 0 {
			msg = fmt.Sprintf("%s at %s", msg, yamlPath(e.Context.Path))
		}
		out = append(out, l.at(line, e.Kind.String()+": "+msg))
	}
	return out
}

// yamlPath prints a report path like storage.files.3.path.
func yamlPath(p []interface{}) string {
	var parts []string
	for _, e := range p {
		parts = append(parts, fmt.Sprint(e))
	}
	return strings.Join(parts, ".")
}

// fromError converts an error Butane returned without a report: YAML syntax
// and type errors ("yaml: line 12: ..."), or a bad variant/version.
func (l *locator) fromError(err error) []Problem {
	msg := err.Error()
	var out []Problem
	for _, it := range yamlerr.Explain(err, l.rendered) {
		if it.Line == 0 {
			continue
		}
		p := l.at(it.Line, "")
		// "already defined at line N" names a rendered line: say the
		// template line instead.
		p.Message = "YAML: " + yamlerr.Lines(it.Message, func(n int) string {
			src, ok := l.lines.at(n)
			switch {
			case !ok:
				return "a line of the rendered Butane"
			case l.origin(src.file) == p.File:
				return fmt.Sprintf("line %d", src.line)
			default:
				return fmt.Sprintf("%s:%d", l.origin(src.file), src.line)
			}
		})
		out = append(out, p)
	}
	if len(out) > 0 {
		return out
	}
	// Version and variant errors concern the top-level keys.
	line := 0
	for i, s := range strings.Split(string(l.rendered), "\n") {
		if strings.HasPrefix(s, "version:") || strings.HasPrefix(s, "variant:") {
			line = i + 1
			break
		}
	}
	return []Problem{l.at(line, msg)}
}

// templateProblem converts a text/template error.
func templateProblem(set *profiles.Set, base Problem, err error) Problem {
	p := base
	var perr *profiles.Error
	if !errors.As(err, &perr) {
		err = set.ExecError(err)
	}
	if errors.As(err, &perr) {
		p.File, p.Line, p.Message = perr.File, perr.Line, perr.Message
		return p
	}
	p.Message = err.Error()
	return p
}
