package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// BMC types flint drives (package power, through bmclib).
const (
	BMCIPMI    = "ipmi"    // IPMI 2.0 over LAN (RMCP+), with the ipmitool program
	BMCRedfish = "redfish" // DMTF Redfish over HTTPS
	BMCAMT     = "amt"     // Intel AMT (vPro NUCs) over WS-Management
)

// Boot modes of a BMC's next-boot override.
const (
	BootModeUEFI   = "uefi"
	BootModeLegacy = "legacy"
)

// DefaultBMCTimeout bounds each power operation (flint power, reprovision --reboot).
const DefaultBMCTimeout = 30 * time.Second

// BMC is how flint reaches a machine's baseboard management controller to
// switch it on and off and make its next boot a network boot. Its password
// never sits in the config: it comes from PasswordFile (mode 0600) or the
// environment variable PasswordEnv.
type BMC struct {
	// Type is ipmi, redfish or amt.
	Type string `yaml:"type"`
	// Address is host or host:port (defaults: 623 for ipmi, 443 for redfish,
	// 16992 for amt; 16993 makes amt use TLS).
	Address  string `yaml:"address"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (one line); only its owner may read it.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names the environment variable that holds the password.
	PasswordEnv string `yaml:"password_env"`
	// BootMode of the network-boot override: uefi (default) or legacy.
	BootMode string `yaml:"boot_mode"`
	// CAFile verifies a redfish BMC's certificate; without it the
	// certificate is not checked (BMCs ship self-signed ones).
	CAFile string `yaml:"ca_file"`
	// Timeout bounds each operation (default 30s).
	Timeout Duration `yaml:"timeout"`

	// Host and Port, parsed from Address by Validate (Port 0: the type's default).
	Host string `yaml:"-"`
	Port int    `yaml:"-"`
}

// refusedKeys are keys a mapping does not take for a reason worth more than
// "unknown key": what to write instead.
var refusedKeys = map[reflect.Type]map[string]string{
	reflect.TypeOf(BMC{}): {
		"password": bmcPasswordHint,
		"passwd":   bmcPasswordHint,
		"pass":     bmcPasswordHint,
		"secret":   bmcPasswordHint,
	},
}

const bmcPasswordHint = "a BMC password never goes in the config file (it is read by anyone who reads the config): " +
	"put it in a file only flint's user can read (chmod 0600) and name that with password_file, " +
	"or name an environment variable that holds it with password_env"

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateBMCs checks machines[].bmc.
func (cfg *Config) validateBMCs(c *checker) {
	for i := range cfg.Machines {
		b := cfg.Machines[i].BMC
		if b == nil {
			continue
		}
		f := fmt.Sprintf("machines[%d].bmc", i)
		if b.Timeout.Duration == 0 {
			b.Timeout.Duration = DefaultBMCTimeout
		}
		if b.BootMode == "" {
			b.BootMode = BootModeUEFI
		}
		switch b.Type {
		case BMCIPMI, BMCRedfish, BMCAMT:
		case "":
			c.fail(f+".type", "missing: use ipmi, redfish or amt")
		default:
			c.fail(f+".type", "unknown BMC type %q: use ipmi, redfish or amt", b.Type)
		}
		b.Host, b.Port = "", 0
		if b.Address == "" {
			c.fail(f+".address", "missing: the BMC's host name or IP address, with :port if it is not the usual one")
		} else if host, port, err := splitHostPort(b.Address); err != nil {
			c.fail(f+".address", "%q %v: write host or host:port (an IPv6 address as [addr]:port)", b.Address, err)
		} else {
			b.Host, b.Port = host, port
		}
		if b.Username == "" {
			c.fail(f+".username", "missing: the BMC user flint logs in as")
		}
		switch {
		case b.PasswordFile != "" && b.PasswordEnv != "":
			c.fail(f+".password_env", "give the password one way: password_file or password_env, not both")
		case b.PasswordFile == "" && b.PasswordEnv == "":
			c.fail(f, "no password: name a file that holds it (password_file, mode 0600) or an environment variable (password_env)")
		case b.PasswordFile != "":
			if msg := checkSecretFile(b.PasswordFile); msg != "" {
				c.fail(f+".password_file", "%s", msg)
			}
		default:
			if !envNameRE.MatchString(b.PasswordEnv) {
				c.fail(f+".password_env", "%q is not an environment variable name (letters, digits and _, not starting with a digit)", b.PasswordEnv)
			}
		}
		switch b.BootMode {
		case BootModeUEFI, BootModeLegacy:
		default:
			c.fail(f+".boot_mode", "unknown boot mode %q: use uefi or legacy", b.BootMode)
		}
		if b.CAFile != "" && b.Type != BMCRedfish {
			c.fail(f+".ca_file", "only a redfish BMC speaks TLS that flint verifies: remove ca_file or use type redfish")
		}
		if t := b.Timeout.Duration; t < time.Second || t > 10*time.Minute {
			c.fail(f+".timeout", "%s is out of range 1s-10m (default 30s)", t)
		}
	}
}

// splitHostPort reads host or host:port; port 0 means "the default".
func splitHostPort(addr string) (string, int, error) {
	if strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == '/' || r == '@' }) {
		return "", 0, errors.New("contains white space, / or @")
	}
	host, portText := addr, ""
	if strings.HasPrefix(addr, "[") || strings.Count(addr, ":") == 1 {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
				return addr[1 : len(addr)-1], 0, nil
			}
			return "", 0, errors.New("is not host:port")
		}
		host, portText = h, p
	}
	if host == "" {
		return "", 0, errors.New("has no host")
	}
	if portText == "" {
		return host, 0, nil
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("has port %q, not 1-65535", portText)
	}
	return host, port, nil
}

// checkSecretFile says what is wrong with a file that holds a secret, or "".
func checkSecretFile(path string) string {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist: create it with the password on one line and chmod 0600 it", path)
	case err != nil:
		return fmt.Sprintf("%s: %v", path, err)
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%s is not a regular file: name the file that holds the password", path)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Sprintf("%s has mode %04o: other users can read the BMC password; run chmod 0600 %s", path, fi.Mode().Perm(), path)
	}
	return ""
}

// BMCPassword reads the password of b from its file or environment
// variable. The error names where it looked, never the password.
func BMCPassword(b *BMC) (string, error) {
	if b.PasswordEnv != "" {
		v, ok := os.LookupEnv(b.PasswordEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("the BMC password comes from the environment variable %s, which is not set: set it for this command (and for flint serve)", b.PasswordEnv)
		}
		return v, nil
	}
	if msg := checkSecretFile(b.PasswordFile); msg != "" {
		return "", fmt.Errorf("BMC password file %s", msg)
	}
	data, err := os.ReadFile(b.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("read the BMC password file: %w (run this as the user that owns it)", err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("BMC password file %s is empty: write the password on its first line", b.PasswordFile)
	}
	return pw, nil
}
