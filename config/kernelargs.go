package config

import (
	"fmt"
	"strings"
	"text/template"
)

// ArgData is what a kernel argument template sees: `hostname={{.Hostname}}`.
type ArgData struct {
	Hostname string
	FQDN     string
	MAC      string // 52:54:00:12:34:56
	IP       string
	Role     string
}

// KernelArgs expands the machine's kernel arguments (boot.kernel_args, then
// machines[].kernel_args) as Go templates over ArgData.
func (c *Config) KernelArgs(m *Machine) ([]string, error) {
	data := ArgData{Hostname: m.Hostname, FQDN: c.FQDN(m), MAC: m.MAC, IP: m.IP, Role: m.Role}
	var out []string
	for _, a := range append(append([]string{}, c.Boot.KernelArgs...), m.KernelArgs...) {
		s, err := expandArg(a, data)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func expandArg(arg string, data ArgData) (string, error) {
	if !strings.Contains(arg, "{{") {
		return arg, nil
	}
	t, err := template.New("arg").Option("missingkey=error").Parse(arg)
	if err != nil {
		return "", fmt.Errorf("kernel argument %q: %w", arg, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("kernel argument %q: %w (fields: .Hostname .FQDN .MAC .IP .Role)", arg, err)
	}
	return b.String(), nil
}
