package ignition

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	v3 "github.com/coreos/ignition/v2/config/v3_4/types"
	v2 "github.com/flatcar/ignition/config/v2_3/types"
	legacyparse "github.com/flatcar/ignition/config/v2_4"
)

// LegacyVersion is the spec legacy clients get. Flatcar's legacy Ignition
// (github.com/flatcar/ignition v0.36.x) parses 2.0-2.4; 2.3.0 is the newest
// spec it treats as stable, and it has everything the profiles use.
const LegacyVersion = "2.3.0"

// No maintained 3.x -> 2.x translator is served by the module proxy
// (coreos/ign-converter and flatcar/ign-converter are not), so flint
// translates the subset its profiles use: files (contents source,
// compression, verification, mode, owner ids or names, overwrite),
// directories, links, systemd units with drop-ins, and users' SSH keys and
// password hashes. Anything else is refused with the field that is in the
// way, rather than silently dropped.

// toLegacy translates a spec 3.4 config into spec 2.3.
func toLegacy(c v3.Config) (v2.Config, error) {
	out := v2.Config{Ignition: v2.Ignition{Version: LegacyVersion}}
	var unsupported []string
	check := func(prefix string, rest any) {
		for _, f := range leftover(rest) {
			unsupported = append(unsupported, prefix+f)
		}
	}

	for i, u := range c.Passwd.Users {
		lu := v2.PasswdUser{Name: u.Name, PasswordHash: u.PasswordHash}
		for _, k := range u.SSHAuthorizedKeys {
			lu.SSHAuthorizedKeys = append(lu.SSHAuthorizedKeys, v2.SSHAuthorizedKey(k))
		}
		out.Passwd.Users = append(out.Passwd.Users, lu)
		u.Name, u.PasswordHash, u.SSHAuthorizedKeys = "", nil, nil
		check(fmt.Sprintf("passwd.users[%d].", i), u)
	}

	for i, f := range c.Storage.Files {
		lf := v2.File{Node: legacyNode(f.Node)}
		// 3.x files default to overwrite=false, 2.x files to true: keep 3.x meaning.
		if lf.Overwrite == nil {
			lf.Overwrite = boolPtr(false)
		}
		lf.Mode = f.Mode
		if f.Contents.Source != nil {
			lf.Contents.Source = *f.Contents.Source
		}
		if f.Contents.Compression != nil {
			lf.Contents.Compression = *f.Contents.Compression
		}
		lf.Contents.Verification.Hash = f.Contents.Verification.Hash
		out.Storage.Files = append(out.Storage.Files, lf)
		f.Node, f.Mode = v3.Node{}, nil
		f.Contents.Source, f.Contents.Compression, f.Contents.Verification = nil, nil, v3.Verification{}
		check(fmt.Sprintf("storage.files[%d].", i), f)
	}

	for i, d := range c.Storage.Directories {
		ld := v2.Directory{Node: legacyNode(d.Node)}
		ld.Mode = d.Mode
		out.Storage.Directories = append(out.Storage.Directories, ld)
		d.Node, d.Mode = v3.Node{}, nil
		check(fmt.Sprintf("storage.directories[%d].", i), d)
	}

	for i, l := range c.Storage.Links {
		ll := v2.Link{Node: legacyNode(l.Node)}
		if l.Target != nil {
			ll.Target = *l.Target
		}
		ll.Hard = l.Hard != nil && *l.Hard
		out.Storage.Links = append(out.Storage.Links, ll)
		l.Node, l.Target, l.Hard = v3.Node{}, nil, nil
		check(fmt.Sprintf("storage.links[%d].", i), l)
	}

	// Units map field by field; nothing of a 3.4 unit is left out.
	for _, u := range c.Systemd.Units {
		lu := v2.Unit{Name: u.Name, Enabled: u.Enabled, Mask: u.Mask != nil && *u.Mask}
		if u.Contents != nil {
			lu.Contents = *u.Contents
		}
		for _, d := range u.Dropins {
			ld := v2.SystemdDropin{Name: d.Name}
			if d.Contents != nil {
				ld.Contents = *d.Contents
			}
			lu.Dropins = append(lu.Dropins, ld)
		}
		out.Systemd.Units = append(out.Systemd.Units, lu)
	}

	// Whatever sections remain have no translation.
	rest := c
	rest.Ignition.Version = ""
	rest.Passwd.Users = nil
	rest.Storage.Files, rest.Storage.Directories, rest.Storage.Links = nil, nil, nil
	rest.Systemd.Units = nil
	check("", rest)

	if len(unsupported) > 0 {
		return v2.Config{}, fmt.Errorf("cannot express %s in Ignition spec %s for legacy clients (flint translates files, directories, links, units and users' SSH keys); serve this machine with Flatcar's Ignition v2 (spec 3) instead",
			strings.Join(unsupported, ", "), LegacyVersion)
	}
	return out, nil
}

func legacyNode(n v3.Node) v2.Node {
	ln := v2.Node{Filesystem: "root", Path: n.Path, Overwrite: n.Overwrite}
	if n.User.ID != nil || n.User.Name != nil {
		ln.User = &v2.NodeUser{ID: n.User.ID}
		if n.User.Name != nil {
			ln.User.Name = *n.User.Name
		}
	}
	if n.Group.ID != nil || n.Group.Name != nil {
		ln.Group = &v2.NodeGroup{ID: n.Group.ID}
		if n.Group.Name != nil {
			ln.Group.Name = *n.Group.Name
		}
	}
	return ln
}

func boolPtr(b bool) *bool { return &b }

// leftover lists the dotted JSON paths of the non-empty fields of v.
func leftover(v any) []string {
	raw, err := json.Marshal(v)
	if err != nil {
		return []string{fmt.Sprintf("(unencodable: %v)", err)}
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return []string{fmt.Sprintf("(undecodable: %v)", err)}
	}
	var out []string
	collect("", tree, &out)
	sort.Strings(out)
	return out
}

func collect(path string, v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			p := k
			if path != "" {
				p = path + "." + k
			}
			collect(p, c, out)
		}
	case []any:
		for i, c := range v {
			collect(fmt.Sprintf("%s[%d]", path, i), c, out)
		}
	case nil:
	case string:
		if v != "" {
			*out = append(*out, path)
		}
	default: // numbers and booleans are set on purpose, even when zero or false
		*out = append(*out, path)
	}
}

// marshalLegacy encodes c without the empty objects encoding/json writes for
// unset struct fields ("security":{"tls":{}}): the legacy parser warns about
// keys it does not know in them, and they mean nothing anyway.
func marshalLegacy(c v2.Config) ([]byte, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	prune(tree)
	return json.Marshal(tree) // map keys sorted: deterministic
}

// prune removes empty objects and arrays, innermost first.
func prune(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if prune(c) {
				delete(v, k)
			}
		}
		return len(v) == 0
	case []any:
		for _, c := range v {
			prune(c)
		}
		return len(v) == 0
	}
	return false
}

// validateLegacy parses a spec 2.x config the way the legacy client does.
func validateLegacy(raw []byte) error {
	_, rpt, err := legacyparse.Parse(raw)
	if err != nil {
		return fmt.Errorf("legacy Ignition (flatcar/ignition v0.36.2) rejects the translated config: %v: %s", err, strings.TrimSpace(rpt.String()))
	}
	if len(rpt.Entries) > 0 {
		return fmt.Errorf("legacy Ignition (flatcar/ignition v0.36.2) warns about the translated config: %s", strings.TrimSpace(rpt.String()))
	}
	return nil
}
