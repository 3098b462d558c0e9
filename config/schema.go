package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkShape walks the parsed YAML against the Go types it will decode into
// and reports, in the config's own terms, every key the type does not take
// and every value of the wrong kind, each at its own line. It removes what it
// reports from the tree, so what is left decodes and the other checks still
// run on it.
func checkShape(root *yaml.Node) []Problem {
	s := &shape{expanding: map[*yaml.Node]bool{}}
	s.value(root, reflect.TypeOf(Config{}), "")
	return s.problems
}

type shape struct {
	problems  []Problem
	expanding map[*yaml.Node]bool // aliases being followed, against cycles
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// value checks n against t; false means n is wrong and its key should go.
func (s *shape) value(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || s.expanding[n.Alias] {
			return true // yaml's decoder reports these itself
		}
		s.expanding[n.Alias] = true
		defer delete(s.expanding, n.Alias)
		return s.value(n.Alias, t, path)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return true // an empty value leaves the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || (t.Kind() != reflect.Struct && t.Kind() != reflect.Slice) {
		return s.leaf(n, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			s.fail(n, path, "must be a mapping of keys (%s), not %s", strings.Join(yamlKeys(t), ", "), kindName(n))
			return false
		}
		s.mapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			s.fail(n, path, "must be a list (- item per line, or [a, b]), not %s", kindName(n))
			return false
		}
		kept := n.Content[:0]
		for i, c := range n.Content {
			if s.value(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)) {
				kept = append(kept, c)
			} else {
				// keep the item's place so later indexes still match the file
				kept = append(kept, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: c.Line, Column: c.Column})
			}
		}
		n.Content = kept
	}
	return true
}

func (s *shape) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := yamlFields(t)
	seen := map[string]int{}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if name == "" || k.Kind != yaml.ScalarNode {
			name = strconv.Quote(k.Value)
		}
		if k.ShortTag() == "!!merge" {
			// <<: *anchor merges the anchor's keys in; check them as ours.
			ok := true
			if v.Kind == yaml.SequenceNode {
				for _, c := range v.Content {
					ok = s.value(c, t, path) && ok
				}
			} else {
				ok = s.value(v, t, path)
			}
			if ok {
				kept = append(kept, k, v)
			}
			continue
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		if first, dup := seen[name]; dup {
			s.problems = append(s.problems, Problem{Field: p, Line: k.Line, Message: fmt.Sprintf("is given twice (first at line %d): keep one", first)})
			continue
		}
		seen[name] = k.Line
		ft, known := fields[k.Value]
		if hint, refused := refusedKeys[t][k.Value]; refused && !known {
			s.problems = append(s.problems, Problem{Field: p, Line: k.Line, Message: hint})
			continue
		}
		if !known || k.Kind != yaml.ScalarNode {
			where := path
			if where == "" {
				where = "the config"
			}
			msg := fmt.Sprintf("unknown key; %s takes: %s", where, strings.Join(yamlKeys(t), ", "))
			if near := nearest(k.Value, yamlKeys(t)); near != "" {
				msg = fmt.Sprintf("unknown key (did you mean %s?); %s takes: %s", near, where, strings.Join(yamlKeys(t), ", "))
			}
			s.problems = append(s.problems, Problem{Field: p, Line: k.Line, Message: msg})
			continue
		}
		if s.value(v, ft, p) {
			kept = append(kept, k, v)
		}
	}
	n.Content = kept
}

// leaf checks a value that decodes as one piece (a number, a duration...)
// by decoding it on its own.
func (s *shape) leaf(n *yaml.Node, t reflect.Type, path string) bool {
	if err := n.Decode(reflect.New(t).Interface()); err == nil {
		return true
	}
	if n.Kind != yaml.ScalarNode {
		s.fail(n, path, "must be a single value, not %s", kindName(n))
		return false
	}
	switch {
	case t == reflect.TypeOf(Duration{}):
		s.fail(n, path, "%q is not a duration like 90s, 30m or 2h", n.Value)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		if n.ShortTag() == "!!int" || strings.Trim(n.Value, "+-0123456789") == "" {
			s.fail(n, path, "%s is too large for a number here", n.Value)
		} else {
			s.fail(n, path, "%q is not a number", n.Value)
		}
	case t.Kind() == reflect.Bool:
		s.fail(n, path, "%q is not true or false", n.Value)
	default:
		s.fail(n, path, "%q is not a valid value here", n.Value)
	}
	return false
}

func (s *shape) fail(n *yaml.Node, path, format string, args ...any) {
	if path == "" {
		path = "(file)"
	}
	s.problems = append(s.problems, Problem{Field: path, Line: n.Line, Message: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// yamlFields maps each yaml key of struct t to its field's type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// yamlKeys are t's keys in the order the struct declares them.
func yamlKeys(t reflect.Type) []string {
	fields := yamlFields(t)
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if _, ok := fields[name]; ok && f.IsExported() {
			keys = append(keys, name)
		}
	}
	return keys
}

// nearest is the key within two edits of s, if exactly one is closest.
func nearest(s string, keys []string) string {
	type cand struct {
		key  string
		dist int
	}
	var cs []cand
	for _, k := range keys {
		if d := editDistance(s, k); d <= 2 && d < len(k) {
			cs = append(cs, cand{k, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].dist < cs[j].dist })
	if len(cs) == 0 || (len(cs) > 1 && cs[0].dist == cs[1].dist) {
		return ""
	}
	return cs[0].key
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
