// Package kubernetes_test checks deploy/kubernetes: every document decodes
// strictly into its k8s.io/api type (a misspelt field fails here, not as a
// silently ignored line in the cluster), and the Deployment runs flint the
// way it needs to run.
package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/flint-boot/flint/config"
)

// kinds are the objects the manifests may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/Namespace":             func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":             func() any { return &corev1.ConfigMap{} },
	"v1/PersistentVolumeClaim": func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":       func() any { return &appsv1.Deployment{} },
}

type object struct {
	where string // file and document number
	obj   any
}

var separator = regexp.MustCompile(`(?m)^---\s*$`)

// load decodes every document of every YAML file here.
func load(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.y*ml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files in deploy/kubernetes")
	}
	var out []object
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range separator.Split(string(data), -1) {
			where := fmt.Sprintf("%s document %d", file, i+1)
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
				continue // only comments
			}
			var tm metav1.TypeMeta
			if err := json.Unmarshal(js, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
			if !ok {
				t.Fatalf("%s: apiVersion %q kind %q is not one this test knows; add its k8s.io/api type to kinds", where, tm.APIVersion, tm.Kind)
			}
			obj := newObj()
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(obj); err != nil {
				t.Fatalf("%s (%s): %v", where, tm.Kind, err)
			}
			out = append(out, object{where, obj})
		}
	}
	return out
}

func one[T any](t *testing.T, objs []object) (T, string) {
	t.Helper()
	var (
		found []T
		where string
	)
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			found = append(found, v)
			where = o.where
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want exactly one %T in deploy/kubernetes, found %d", zero, len(found))
	}
	return found[0], where
}

func TestManifests(t *testing.T) {
	objs := load(t)
	ns, _ := one[*corev1.Namespace](t, objs)
	cm, _ := one[*corev1.ConfigMap](t, objs)
	pvc, _ := one[*corev1.PersistentVolumeClaim](t, objs)
	dep, where := one[*appsv1.Deployment](t, objs)
	for _, o := range objs {
		if m, ok := o.obj.(metav1.Object); ok && m.GetNamespace() != ns.Name && o.obj != any(ns) {
			t.Errorf("%s: %s is in namespace %q, not the manifests' %q", o.where, m.GetName(), m.GetNamespace(), ns.Name)
		}
	}

	spec := dep.Spec.Template.Spec
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("%s: want replicas 1 and strategy Recreate (one flint per segment), got replicas %v strategy %q", where, dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("%s: want hostNetwork true (DHCP broadcasts) with dnsPolicy ClusterFirstWithHostNet, got %v %q", where, spec.HostNetwork, spec.DNSPolicy)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: want one container, got %d", where, len(spec.Containers))
	}
	c := spec.Containers[0]

	// The container runs flint serve; its flags name the mounted files.
	argv := append(slices.Clone(c.Command), c.Args...)
	if len(argv) < 2 || path.Base(argv[0]) != "flint" || argv[1] != "serve" {
		t.Fatalf("%s: the container runs %q, want flint serve", where, argv)
	}
	configPath, dataDir := flag(t, argv, "--config"), flag(t, argv, "--data")
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	cfgMount, ok := mounts[path.Dir(configPath)]
	if !ok {
		t.Fatalf("%s: --config %s: nothing is mounted at %s", where, configPath, path.Dir(configPath))
	}
	cfgVol := volumes[cfgMount.Name].ConfigMap
	if cfgVol == nil || cfgVol.Name != cm.Name {
		t.Fatalf("%s: %s is not the ConfigMap %s", where, path.Dir(configPath), cm.Name)
	}
	flintYAML, ok := cm.Data[path.Base(configPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s, the file --config %s reads", cm.Name, path.Base(configPath), configPath)
	}
	dataMount, ok := mounts[dataDir]
	if !ok || dataMount.ReadOnly {
		t.Fatalf("%s: --data %s: no writable volume is mounted there", where, dataDir)
	}
	if claim := volumes[dataMount.Name].PersistentVolumeClaim; claim == nil || claim.ClaimName != pvc.Name {
		t.Errorf("%s: --data %s is not on the PersistentVolumeClaim %s (leases and the PKI would not survive a restart)", where, dataDir, pvc.Name)
	}

	// The config parses, and the probes ask its HTTP port.
	cfg, err := config.Parse("ConfigMap "+cm.Name+" "+path.Base(configPath), []byte(flintYAML))
	if err != nil {
		t.Fatalf("the ConfigMap's config: %v", err)
	}
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no httpGet probe on %s", where, name)
			continue
		}
		if p.HTTPGet.Path != name || p.HTTPGet.Port.IntValue() != cfg.Server.HTTPPort {
			t.Errorf("%s: probe asks %s on port %s, want %s on server.http_port %d", where, p.HTTPGet.Path, p.HTTPGet.Port.String(), name, cfg.Server.HTTPPort)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: the liveness probe must be /healthz (a restart does not fix what /readyz reports)", where)
	}

	// Only the capabilities DHCP and TFTP need.
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("%s: no securityContext.capabilities", where)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: capabilities.drop = %v, want [ALL]", where, sc.Capabilities.Drop)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if want := []corev1.Capability{"NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW"}; !slices.Equal(add, want) {
		t.Errorf("%s: capabilities.add = %v, want %v", where, add, want)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want readOnlyRootFilesystem", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want allowPrivilegeEscalation false", where)
	}
	if mem := c.Resources.Limits.Memory(); mem.IsZero() || mem.Value() < 290<<20 {
		t.Errorf("%s: memory limit %s is below the 290 MiB a 2,000-machine storm peaked at (README, Sizing a large site)", where, mem)
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && !strings.HasSuffix(e.Value, "MiB") {
			t.Errorf("%s: GOMEMLIMIT %q: write it in MiB", where, e.Value)
		}
	}
}

// flag returns the value after name in argv.
func flag(t *testing.T, argv []string, name string) string {
	t.Helper()
	i := slices.Index(argv, name)
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("the container's command %q has no %s", argv, name)
	}
	return argv[i+1]
}
