package ignition

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	v3 "github.com/coreos/ignition/v2/config/v3_4/types"
	legacyparse "github.com/flatcar/ignition/config/v2_4"
	"github.com/flint-boot/flint/config"
)

// node summarises a file or directory the same way for both specs.
type nodeSummary struct {
	Kind, Path   string
	Mode         int
	UID, GID     string
	Overwrite    string
	Source, Hash string
}

func optInt(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func optBool(p *bool) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func optStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func TestLegacyCarriesTheSameConfig(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.renderer(t, realPKI(t))
	for _, mac := range []config.MAC{macNuc1, macNuc4} {
		modern, err := r.RenderMAC(mac, SpecV3)
		if err != nil {
			t.Fatal(err)
		}
		old, err := r.RenderMAC(mac, SpecLegacy)
		if err != nil {
			t.Fatal(err)
		}
		// The legacy client's own entry point (config/v2_4.Parse reads 2.0-2.4).
		lc, rpt, err := legacyparse.Parse(old)
		if err != nil || len(rpt.Entries) > 0 {
			t.Fatalf("legacy parser: %v %s", err, rpt)
		}
		if !strings.Contains(string(old), `"version":"2.3.0"`) {
			t.Errorf("legacy config is not spec 2.3.0: %.80s", old)
		}
		mc := parseV3(t, modern).cfg

		var want, got []nodeSummary
		for _, f := range mc.Storage.Files {
			want = append(want, nodeSummary{"file", f.Path, *f.Mode, optInt(f.User.ID), optInt(f.Group.ID), optBool(f.Overwrite), optStr(f.Contents.Source), optStr(f.Contents.Verification.Hash)})
		}
		for _, d := range mc.Storage.Directories {
			want = append(want, nodeSummary{"dir", d.Path, *d.Mode, optInt(d.User.ID), optInt(d.Group.ID), optBool(d.Overwrite), "", ""})
		}
		for _, f := range lc.Storage.Files {
			if f.Filesystem != "root" {
				t.Errorf("%s: filesystem %q", f.Path, f.Filesystem)
			}
			var uid, gid *int
			if f.User != nil {
				uid = f.User.ID
			}
			if f.Group != nil {
				gid = f.Group.ID
			}
			got = append(got, nodeSummary{"file", f.Path, *f.Mode, optInt(uid), optInt(gid), optBool(f.Overwrite), f.Contents.Source, optStr(f.Contents.Verification.Hash)})
		}
		for _, d := range lc.Storage.Directories {
			var uid, gid *int
			if d.User != nil {
				uid = d.User.ID
			}
			if d.Group != nil {
				gid = d.Group.ID
			}
			got = append(got, nodeSummary{"dir", d.Path, *d.Mode, optInt(uid), optInt(gid), optBool(d.Overwrite), "", ""})
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("files differ:\nlegacy %+v\nmodern %+v", got, want)
		}

		type unitSummary struct {
			Name, Enabled, Contents string
		}
		var wantU, gotU []unitSummary
		for _, u := range mc.Systemd.Units {
			wantU = append(wantU, unitSummary{u.Name, optBool(u.Enabled), optStr(u.Contents)})
		}
		for _, u := range lc.Systemd.Units {
			gotU = append(gotU, unitSummary{u.Name, optBool(u.Enabled), u.Contents})
		}
		if !reflect.DeepEqual(gotU, wantU) {
			t.Errorf("units differ:\nlegacy %+v\nmodern %+v", gotU, wantU)
		}
		if len(lc.Passwd.Users) != 1 || lc.Passwd.Users[0].Name != "core" || len(lc.Passwd.Users[0].SSHAuthorizedKeys) != 1 ||
			string(lc.Passwd.Users[0].SSHAuthorizedKeys[0]) != string(mc.Passwd.Users[0].SSHAuthorizedKeys[0]) {
			t.Errorf("legacy users %+v", lc.Passwd.Users)
		}
	}
}

func TestLegacyRefusesWhatItCannotTranslate(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	server := embeddedText(t, "server.yaml")
	// Appending to a file has a 2.x form, but not one flint translates; and
	// user groups have none in this subset.
	src := insertAfter(t, server, `{{- template "k3s-files" .}}`, "    - path: /etc/motd\n      append:\n        - inline: hello\n")
	e.writeProfile(t, "server.yaml", src)
	r := e.renderer(t, fakeSecrets{})
	if _, err := r.RenderMAC(macNuc1, SpecV3); err != nil {
		t.Fatalf("spec 3 render: %v", err)
	}
	_, err := r.RenderMAC(macNuc1, SpecLegacy)
	if err == nil || !strings.Contains(err.Error(), "storage.files[") || !strings.Contains(err.Error(), ".append[0].source") {
		t.Errorf("err = %v, want a refusal naming storage.files[N].append", err)
	}
}

func TestToLegacyReportsEverySection(t *testing.T) {
	hard := true
	c := v3.Config{Ignition: v3.Ignition{Version: "3.4.0"}}
	c.Storage.Disks = []v3.Disk{{Device: "/dev/sda"}}
	c.Passwd.Groups = []v3.PasswdGroup{{Name: "ops"}}
	c.Storage.Links = []v3.Link{{Node: v3.Node{Path: "/etc/l"}, LinkEmbedded1: v3.LinkEmbedded1{Target: strPtr("/x"), Hard: &hard}}}
	_, err := toLegacy(c)
	if err == nil {
		t.Fatal("no error")
	}
	for _, s := range []string{"storage.disks[0].device", "passwd.groups[0].name"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%v lacks %s", err, s)
		}
	}
	if strings.Contains(err.Error(), "storage.links") {
		t.Errorf("links are translatable: %v", err)
	}
}

func strPtr(s string) *string { return &s }
