package yamlerr

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestExplain: each YAML mistake is reported at the line a person edits,
// in words that say what to do, however far its block began above it.
func TestExplain(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []Item // Message: a part of it
	}{
		{"key indented off its siblings, deep in a block",
			"a:\n  b:\n    - x: 1\n      y: 2\n    - x: 3\n      y: 4\n    - x: 5\n     y: 6\n",
			[]Item{{8, "not indented like the keys above it"}}},
		{"key indented off a mapping's keys",
			"server:\n  address: 198.18.0.1\n  http_port: 80\n tftp_port: 69\n",
			[]Item{{4, "not indented like the keys above it"}}},
		{"unclosed list at its opening line",
			"a: 1\nb: [1, 2\nc: 3\n",
			[]Item{{2, "a [ list opened here is not closed"}}},
		{"unclosed mapping at its opening line",
			"a: 1\nb: {x: 1\nc: 3\n",
			[]Item{{2, "a { mapping opened here is not closed"}}},
		{"scanner error at its own line",
			"a: 1\nb: x: y\n",
			[]Item{{2, "mapping values are not allowed"}}},
		{"duplicate key",
			"a: 1\nb: 2\na: 3\n",
			[]Item{{3, `mapping key "a" already defined at line 1`}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var v any
			err := yaml.Unmarshal([]byte(c.doc), &v)
			if err == nil {
				t.Fatal("the document parses")
			}
			got := Explain(err, []byte(c.doc))
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v (from %v)", got, c.want, err)
			}
			for i, w := range c.want {
				if got[i].Line != w.Line || !strings.Contains(got[i].Message, w.Message) {
					t.Errorf("item %d: got line %d %q, want line %d %q (from %v)", i, got[i].Line, got[i].Message, w.Line, w.Message, err)
				}
			}
		})
	}
}

// TestExplainTypeErrors: every type error is its own item at its line.
func TestExplainTypeErrors(t *testing.T) {
	doc := "a: x\nb: [1]\n"
	var v struct{ A, B int }
	err := yaml.Unmarshal([]byte(doc), &v)
	got := Explain(err, []byte(doc))
	if len(got) != 2 || got[0].Line != 1 || got[1].Line != 2 {
		t.Fatalf("got %v from %v, want two items at lines 1 and 2", got, err)
	}
}

func TestLines(t *testing.T) {
	got := Lines(`mapping key "a" already defined at line 103`, func(n int) string {
		if n != 103 {
			t.Errorf("asked for line %d, want 103", n)
		}
		return "server.yaml:26"
	})
	if got != `mapping key "a" already defined at server.yaml:26` {
		t.Errorf("got %q", got)
	}
}
