package ipxe

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/flint-boot/flint/config"
)

const testConfig = `
server:
  address: 198.18.0.1
  http_port: 8080
dhcp:
  mode: proxy
  subnet: 198.18.0.0/24
boot:
  kernel_args: ["console=tty0", "console=ttyS0,115200n8"]
cluster: {install_mode: live}
machines:
  - {mac: "52:54:00:12:34:56", hostname: nuc1, ip: 198.18.0.11, role: server}
  - mac: "52:54:00:12:34:57"
    hostname: nuc2
    ip: 198.18.0.12
    role: agent
    kernel: http://198.18.1.10/flatcar/current/vmlinuz
    initrd: /custom/initrd-v2.cpio.gz
    kernel_args: ["flatcar.autologin"]
  - mac: "52:54:00:12:34:58"
    hostname: nuc3
    ip: 198.18.0.13
    role: agent
    initrd: https://198.18.1.10/images/initrd.cpio.gz?v=2
`

func testCfg(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkScript asserts what iPXE needs to run a script: the magic line, every
// goto target defined once, balanced ${...}, and a final exit 1.
func checkScript(t *testing.T, s string) {
	t.Helper()
	if !strings.HasPrefix(s, "#!ipxe\n") {
		t.Fatalf("script does not start with #!ipxe:\n%s", s)
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	labels := map[string]int{}
	for _, l := range lines {
		if strings.HasPrefix(l, ":") {
			labels[strings.Fields(l)[0][1:]]++
		}
		for rest := l; strings.Contains(rest, "${"); {
			rest = rest[strings.Index(rest, "${")+2:]
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				t.Errorf("unclosed ${ in %q", l)
				break
			}
			rest = rest[end+1:]
		}
	}
	for name, n := range labels {
		if n > 1 {
			t.Errorf("label :%s defined %d times", name, n)
		}
	}
	for _, m := range regexp.MustCompile(`goto (\S+)`).FindAllStringSubmatch(s, -1) {
		if labels[m[1]] == 0 {
			t.Errorf("goto %s has no label :%s", m[1], m[1])
		}
	}
	if last := lines[len(lines)-1]; last != "exit 1" {
		t.Errorf("last line is %q, want exit 1", last)
	}
}

// lineWith returns the only line starting with prefix.
func lineWith(t *testing.T, s, prefix string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one line starting with %q, got %d:\n%s", prefix, len(found), s)
	}
	return found[0]
}

func TestChain(t *testing.T) {
	s := Chain("http://198.18.0.1:8080")
	checkScript(t, s)
	chain := lineWith(t, s, "chain ")
	wantURL := "http://198.18.0.1:8080/machines/${mac:hexhyp}/boot.ipxe?arch=${buildarch}"
	if f := strings.Fields(chain); f[1] != wantURL || !strings.HasSuffix(chain, " ||") {
		t.Errorf("chain line = %q, want URL %s and a trailing ||", chain, wantURL)
	}
	for _, want := range []string{
		"set flint_chain_tries:int32 0\n:flint_chain\n",
		"inc flint_chain_tries\n",
		"iseq ${flint_chain_tries} 5 && goto flint_failed ||\n",
		"sleep 5 ||\ngoto flint_chain\n",
		"isset ${flint_boot_failed} && exit 1 ||\n",
		"prompt --timeout 30000 ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("chain script lacks %q:\n%s", want, s)
		}
	}
	if !strings.Contains(lineWith(t, s, "echo flint: giving up"), wantURL) {
		t.Errorf("giving-up message does not name the URL")
	}
}

// testToken stands for a boot token (64 hex digits, as the lifecycle issues).
var testToken = strings.Repeat("0f", 32)

func TestMachineScriptDefaults(t *testing.T) {
	cfg := testCfg(t)
	m, _ := cfg.MachineByName("nuc1")
	s := MachineScript(cfg, m, testToken)
	checkScript(t, s)

	if echo := lineWith(t, s, "echo flint: booting "); !strings.Contains(echo, "nuc1") || !strings.Contains(echo, "52:54:00:12:34:56") {
		t.Errorf("greeting does not name the machine: %q", echo)
	}
	kernel := strings.Fields(lineWith(t, s, "kernel "))
	want := []string{
		"kernel",
		"http://198.18.0.1:8080/assets/flatcar/flatcar_production_pxe.vmlinuz",
		"initrd=flatcar_production_pxe_image.cpio.gz",
		"flatcar.first_boot=1",
		"ignition.config.url=http://198.18.0.1:8080/ignition?mac=52-54-00-12-34-56&token=" + testToken,
		"console=tty0", "console=ttyS0,115200n8",
		"&&", "goto", "flint_initrd", "||",
	}
	if !slices.Equal(kernel, want) {
		t.Errorf("kernel line\n got %q\nwant %q", kernel, want)
	}
	initrd := strings.Fields(lineWith(t, s, "initrd "))
	if initrd[1] != "http://198.18.0.1:8080/assets/flatcar/flatcar_production_pxe_image.cpio.gz" {
		t.Errorf("initrd line = %q", initrd)
	}
	for _, want := range []string{
		"set flint_tries:int32 0\n:flint_kernel\n",
		"iseq ${flint_tries} 5 && goto flint_failed ||\n",
		"sleep 5 ||\ngoto flint_kernel\n",
		"set flint_tries:int32 0\n:flint_initrd_fetch\n",
		"sleep 5 ||\ngoto flint_initrd_fetch\n",
		":flint_boot\nboot ||\n",
		"set flint_boot_failed 1\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("machine script lacks %q:\n%s", want, s)
		}
	}
	// The kernel must be loaded before the initrd, and both before boot.
	if k, i, b := strings.Index(s, "\nkernel "), strings.Index(s, "\ninitrd "), strings.Index(s, "\nboot "); !(k < i && i < b) {
		t.Errorf("kernel/initrd/boot out of order: %d %d %d", k, i, b)
	}
}

func TestMachineScriptOverrides(t *testing.T) {
	cfg := testCfg(t)
	m, _ := cfg.MachineByName("nuc2")
	s := MachineScript(cfg, m, testToken)
	checkScript(t, s)
	kernel := strings.Fields(lineWith(t, s, "kernel "))
	if kernel[1] != "http://198.18.1.10/flatcar/current/vmlinuz" {
		t.Errorf("absolute kernel URL not kept: %q", kernel[1])
	}
	// A relative override lands under /assets/ (a leading / does not make it absolute).
	if got := strings.Fields(lineWith(t, s, "initrd "))[1]; got != "http://198.18.0.1:8080/assets/custom/initrd-v2.cpio.gz" {
		t.Errorf("initrd URL = %q", got)
	}
	if kernel[2] != "initrd=initrd-v2.cpio.gz" {
		t.Errorf("initrd= must name the overridden initrd: %q", kernel[2])
	}
	args := kernel[2 : len(kernel)-4]
	if args[len(args)-1] != "flatcar.autologin" || args[len(args)-2] != "console=ttyS0,115200n8" {
		t.Errorf("machine kernel_args must follow boot.kernel_args: %q", args)
	}

	m3, _ := cfg.MachineByName("nuc3")
	s3 := MachineScript(cfg, m3, testToken)
	k3 := strings.Fields(lineWith(t, s3, "kernel "))
	if k3[2] != "initrd=initrd.cpio.gz" {
		t.Errorf("initrd= of an absolute URL with a query = %q, want initrd=initrd.cpio.gz", k3[2])
	}
	if got := strings.Fields(lineWith(t, s3, "initrd "))[1]; got != "https://198.18.1.10/images/initrd.cpio.gz?v=2" {
		t.Errorf("absolute initrd URL not kept: %q", got)
	}
}

func TestKernelArgsOrder(t *testing.T) {
	cfg := testCfg(t)
	m, _ := cfg.MachineByName("nuc2")
	got := KernelArgs(cfg, m, testToken)
	want := []string{
		"initrd=initrd-v2.cpio.gz",
		"flatcar.first_boot=1",
		"ignition.config.url=http://198.18.0.1:8080/ignition?mac=52-54-00-12-34-57&token=" + testToken,
		"console=tty0", "console=ttyS0,115200n8",
		"flatcar.autologin",
	}
	if !slices.Equal(got, want) {
		t.Errorf("KernelArgs\n got %q\nwant %q", got, want)
	}
}

func TestAssetURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"flatcar/vmlinuz", "http://198.18.0.1/assets/flatcar/vmlinuz"},
		{"/flatcar/vmlinuz", "http://198.18.0.1/assets/flatcar/vmlinuz"},
		{"a b#c?d", "http://198.18.0.1/assets/a%20b%23c%3Fd"},
		{"${buildarch}/vmlinuz", "http://198.18.0.1/assets/${buildarch}/vmlinuz"},
		{"HTTPS://198.18.1.1/x", "HTTPS://198.18.1.1/x"},
	} {
		if got := AssetURL("http://198.18.0.1", c.in); got != c.want {
			t.Errorf("AssetURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestNotFound(t *testing.T) {
	s := NotFound("52-54-00-12-34-99", "not listed under machines: in test.yaml")
	checkScript(t, s)
	echo := lineWith(t, s, "echo flint: MAC ")
	if !strings.Contains(echo, "52-54-00-12-34-99") || !strings.Contains(echo, "not listed under machines:") {
		t.Errorf("explanation lacks MAC or reason: %q", echo)
	}
	for _, want := range []string{"dhcp.discover_unknown", "# flint: MAC 52-54-00-12-34-99", "# UEFI: exit 1"} {
		if !strings.Contains(s, want) {
			t.Errorf("NotFound lacks %q:\n%s", want, s)
		}
	}
}

// Caller text must not be able to add commands or expand settings.
func TestNotFoundSanitizes(t *testing.T) {
	s := NotFound("x\nchain http://198.18.9.9/evil", "a ${net0/ip} || shell # and\r\nexit 0")
	checkScript(t, s)
	for _, l := range strings.Split(s, "\n") {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "echo ") || l == "exit 1" {
			continue
		}
		t.Errorf("unexpected command line %q", l)
	}
	if strings.Contains(s, "${net0/ip}") || strings.Contains(s, "|| shell") {
		t.Errorf("expansion or command chaining survived:\n%s", s)
	}
}

func TestKernelArgsAreTemplates(t *testing.T) {
	cfg := testCfg(t)
	m, _ := cfg.MachineByName("nuc2")
	m.KernelArgs = []string{"flint.node={{.Hostname}}", "ip={{.IP}}::::{{.Hostname}}::off"}
	got := KernelArgs(cfg, m, testToken)
	if got[len(got)-2] != "flint.node=nuc2" || got[len(got)-1] != "ip="+m.IP+"::::nuc2::off" {
		t.Errorf("templated args: %q", got)
	}
}
