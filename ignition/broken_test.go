package ignition

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// embeddedText reads an embedded profile from the source tree.
func embeddedText(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "profiles", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// insertAfter puts text on the lines after the first line containing anchor.
func insertAfter(t *testing.T, src, anchor, text string) string {
	t.Helper()
	i := strings.Index(src, anchor)
	if i < 0 {
		t.Fatalf("anchor %q not found", anchor)
	}
	end := i + strings.IndexByte(src[i:], '\n') + 1
	return src[:end] + text + src[end:]
}

// TestBrokenProfiles: every kind of mistake is reported at the template file
// and line that holds it, not at a line of the rendered Butane (which differs:
// the inserted lines sit after template calls that expand to many lines).
func TestBrokenProfiles(t *testing.T) {
	server := embeddedText(t, "server.yaml")
	common := embeddedText(t, "_common.yaml")
	const afterParts = `{{- template "k3s-files" .}}`
	cases := []struct {
		name    string
		file    string // overlay file to write
		src     string
		marker  string // text on the line the problem must point at
		offset  int    // lines after the marker line
		message string // part of the message
	}{
		{
			name:    "bad YAML",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    - path: /etc/broken\n      mode: 0644: oops\n"),
			marker:  "mode: 0644: oops",
			message: "YAML: mapping values are not allowed",
		},
		{
			name:    "YAML type error",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    - path: /etc/typed\n      mode: [1, 2]\n"),
			marker:  "mode: [1, 2]",
			message: "cannot unmarshal",
		},
		{
			name:    "relative file path",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    - path: etc/relative\n      contents:\n        inline: x\n"),
			marker:  "path: etc/relative",
			message: "path not absolute",
		},
		{
			name:    "invalid unit contents",
			file:    "server.yaml",
			src:     insertAfter(t, server, "  units:", "    - name: broken.service\n      contents: |\n        [Service\n        ExecStart=/bin/true\n"),
			marker:  "name: broken.service",
			offset:  1, // Butane points at the contents
			message: "invalid unit content",
		},
		{
			name: "enabled unit without [Install] (a warning, strict mode fails it)",
			file: "server.yaml",
			src: insertAfter(t, server, "  units:",
				"    - name: noinstall.service\n      enabled: true\n      contents: |\n        [Service]\n        ExecStart=/bin/true\n"),
			marker:  "name: noinstall.service",
			offset:  2,
			message: "warning: unit \"noinstall.service\" is enabled, but has no install section",
		},
		{
			name:    "unknown Butane key",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    - path: /etc/x\n      colour: red\n"),
			marker:  "colour: red",
			message: "colour",
		},
		{
			name:    "missing data field",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    - path: /etc/{{.Machine.Nickname}}\n"),
			marker:  "{{.Machine.Nickname}}",
			message: "Nickname",
		},
		{
			name:    "key indented off its siblings, deep in a block",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    - path: /etc/badindent\n     mode: 0644\n"),
			marker:  "path: /etc/badindent",
			offset:  1,
			message: "YAML: this line is not indented like the keys above it",
		},
		{
			name:    "duplicate key, named at its template line",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    - path: /etc/dup\n      mode: 0644\n      mode: 0600\n"),
			marker:  "mode: 0600",
			message: "already defined at line LINE(path: /etc/dup)+1",
		},
		{
			name:    "template syntax",
			file:    "server.yaml",
			src:     insertAfter(t, server, afterParts, "    {{if}}\n"),
			marker:  "{{if}}",
			message: "if",
		},
		{
			name:    "mistake in a shared part",
			file:    "_common.yaml",
			src:     insertAfter(t, common, `{{define "common-files"}}`, "    - path: relative/in/part\n      contents:\n        inline: x\n"),
			marker:  "path: relative/in/part",
			message: "path not absolute",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOpts{profiles: true})
			e.writeProfile(t, c.file, c.src)
			_, err := e.renderer(t, fakeSecrets{}).RenderMAC(macNuc1, SpecV3)
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ProfileError", err)
			}
			wantFile := filepath.Join(e.profilesDir, c.file)
			wantLine := lineOf(t, c.src, c.marker) + c.offset
			p := pe.Problems[0]
			if p.File != wantFile || p.Line != wantLine {
				t.Errorf("problem at %s:%d, want %s:%d (%s)", p.File, p.Line, wantFile, wantLine, err)
			}
			if i := strings.Index(c.message, "LINE("); i >= 0 {
				// LINE(marker)+k: the template line of the marker, plus k.
				j := strings.Index(c.message[i:], ")") + i
				n := lineOf(t, c.src, c.message[i+5:j])
				rest := c.message[j+1:]
				if strings.HasPrefix(rest, "+") {
					k, _ := strconv.Atoi(rest[1:])
					n, rest = n+k, ""
				}
				c.message = c.message[:i] + strconv.Itoa(n) + rest
			}
			if !strings.Contains(p.Message, c.message) {
				t.Errorf("message %q lacks %q", p.Message, c.message)
			}
			if s := fmt.Sprintf("%s:%d: nuc1", wantFile, wantLine); !strings.HasPrefix(p.String(), s) {
				t.Errorf("String() = %q, want prefix %q", p.String(), s)
			}
			if c.file != "server.yaml" && !strings.Contains(p.String(), "(profile server)") {
				t.Errorf("String() = %q does not name the profile", p.String())
			}
			t.Logf("%s", err)
		})
	}
}

func TestRenderedLineRedactsSecrets(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	server := embeddedText(t, "server.yaml")
	// A bogus field next to a secret: the problem's rendered line must not carry it.
	src := strings.Replace(server, `source: "{{dataurl .Secrets.ServerKey}}"`, `source: "{{dataurl .Secrets.ServerKey}}"`+"\n        bogus: 1", 1)
	e.writeProfile(t, "server.yaml", src)
	_, err := e.renderer(t, fakeSecrets{}).RenderMAC(macNuc1, SpecV3)
	var pe *ProfileError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	for _, p := range pe.Problems {
		if strings.Contains(p.Rendered, "base64,") {
			t.Errorf("rendered context leaks a data URL: %s", p.Rendered)
		}
	}
	if strings.Contains(err.Error(), "LS0tLS1CRUdJT") {
		t.Error("error message contains a base64 PEM")
	}
}

func TestUnknownProfile(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.cfg.Machines[0].Profile = "gpu"
	_, err := e.renderer(t, fakeSecrets{}).RenderMAC(macNuc1, SpecV3)
	if err == nil || !strings.Contains(err.Error(), `profile "gpu" not found`) || !strings.Contains(err.Error(), "agent, installer, server") {
		t.Errorf("err = %v", err)
	}
}

func TestProfileSelectedByMachine(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	agent := embeddedText(t, "agent.yaml")
	e.writeProfile(t, "gpu.yaml", strings.Replace(agent, "k3s agent --node-name {{.Machine.Hostname}}", "k3s agent --node-name {{.Machine.Hostname}} --node-label gpu=true", 1))
	e.cfg.Machines[4].Profile = "gpu"
	r := e.renderer(t, fakeSecrets{})
	out, err := r.RenderMAC(mustMAC("02:00:0a:00:00:47"), SpecV3)
	if err != nil {
		t.Fatal(err)
	}
	opts := parseV3(t, out).unitOpts(t, "k3s-agent.service")
	if got := opts["Service.ExecStart"]; len(got) != 1 || !strings.HasSuffix(got[0], "--node-label gpu=true") {
		t.Errorf("ExecStart %q", got)
	}
	// nuc4 still renders the embedded agent profile.
	out, _ = r.RenderMAC(macNuc4, SpecV3)
	if strings.Contains(string(out), "gpu") {
		t.Error("nuc4 got the gpu profile")
	}
}
