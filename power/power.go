// Package power switches machines on and off and sets their next boot to
// the network through their baseboard management controller (BMC): IPMI
// (with the ipmitool program), Redfish or Intel AMT, all through bmclib.
//
// Callers hold a Controller, a small interface a test can fake. Every
// operation is bounded by the BMC's timeout and by the caller's context
// (Ctrl-C), and BMC passwords never appear in an error.
package power

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"

	"github.com/flint-boot/flint/config"
)

// State is a machine's power state as its BMC reports it.
type State string

const (
	On      State = "on"
	Off     State = "off"
	Unknown State = "unknown"
)

// Controller is what flint does with one machine's BMC.
type Controller interface {
	// Status asks the BMC whether the machine is on.
	Status(ctx context.Context) (State, error)
	// On switches the machine on (nothing if it is on).
	On(ctx context.Context) error
	// Off switches it off hard (nothing if it is off).
	Off(ctx context.Context) error
	// Cycle switches it off and on again, or on if it is off.
	Cycle(ctx context.Context) error
	// NetworkBoot makes the next boot a network (PXE) boot, once.
	// ErrNoBootOverride: the BMC refused it.
	NetworkBoot(ctx context.Context) error
	// Describe names the BMC for messages: "ipmi 198.18.0.9:623".
	Describe() string
}

// ErrNoBootOverride means the BMC did not take a next-boot override.
var ErrNoBootOverride = errors.New("the BMC did not set the next boot to the network")

// ErrNoBMC means the machine has no bmc in the config.
var ErrNoBMC = errors.New("no bmc in the config")

// Default ports of each BMC type.
var defaultPorts = map[string]int{config.BMCIPMI: 623, config.BMCRedfish: 443, config.BMCAMT: 16992}

// bmclib provider of each BMC type: flint never probes the others.
var providers = map[string]string{config.BMCIPMI: "ipmitool", config.BMCRedfish: "gofish", config.BMCAMT: "IntelAMT"}

// Open returns the Controller of machine m: it reads the BMC password and
// checks that what the BMC type needs at run time is installed. It does not
// talk to the BMC yet.
func Open(m *config.Machine) (Controller, error) {
	if m.BMC == nil {
		return nil, fmt.Errorf("%s: %w: add machines[].bmc (type, address, username, password_file or password_env) to power it from flint", m.Hostname, ErrNoBMC)
	}
	b := *m.BMC
	if _, ok := providers[b.Type]; !ok {
		return nil, fmt.Errorf("%s: unknown BMC type %q: use ipmi, redfish or amt", m.Hostname, b.Type)
	}
	if b.Host == "" {
		return nil, fmt.Errorf("%s: the bmc has no address (run flint validate)", m.Hostname)
	}
	pass, err := config.BMCPassword(&b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Hostname, err)
	}
	if b.Type == config.BMCIPMI && len(pass) > 20 {
		// IPMI 2.0 keys a session with at most 20 bytes of password.
		return nil, fmt.Errorf("%s: the BMC password is %d bytes; IPMI allows at most 20: set a shorter one on the BMC and in its password source", m.Hostname, len(pass))
	}
	c := &bmc{machine: m.Hostname, cfg: b, pass: pass, timeout: b.Timeout.Duration}
	if c.timeout <= 0 {
		c.timeout = config.DefaultBMCTimeout
	}
	if c.cfg.Port == 0 {
		c.cfg.Port = defaultPorts[b.Type]
	}
	if b.Type == config.BMCIPMI {
		if c.ipmitool, err = exec.LookPath("ipmitool"); err != nil {
			return nil, fmt.Errorf("%s: an ipmi BMC is driven with the ipmitool program, which is not installed (not on PATH): install it (Debian and Ubuntu: apt-get install ipmitool)", m.Hostname)
		}
	}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: read bmc.ca_file: %w", m.Hostname, err)
		}
		c.roots = x509.NewCertPool()
		if !c.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: bmc.ca_file %s holds no PEM certificate", m.Hostname, b.CAFile)
		}
	}
	return c, nil
}

// bmc is a Controller through bmclib. Each operation opens its own session
// and closes it: a BMC allows few sessions, and a command runs one or two.
type bmc struct {
	machine  string
	cfg      config.BMC
	pass     string
	timeout  time.Duration
	ipmitool string
	roots    *x509.CertPool
}

func (c *bmc) Describe() string {
	return fmt.Sprintf("%s %s", c.cfg.Type, hostPort(c.cfg.Host, c.cfg.Port))
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

func (c *bmc) client() *bmclib.Client {
	port := strconv.Itoa(c.cfg.Port)
	opts := []bmclib.Option{bmclib.WithPerProviderTimeout(c.timeout)}
	switch c.cfg.Type {
	case config.BMCIPMI:
		opts = append(opts, bmclib.WithIpmitoolPort(port), bmclib.WithIpmitoolPath(c.ipmitool))
	case config.BMCRedfish:
		opts = append(opts, bmclib.WithRedfishPort(port))
		if c.roots != nil {
			opts = append(opts, bmclib.WithSecureTLS(c.roots))
		}
	case config.BMCAMT:
		opts = append(opts, bmclib.WithIntelAMTPort(uint32(c.cfg.Port)))
		if c.cfg.Port == 16993 {
			opts = append(opts, bmclib.WithIntelAMTHostScheme("https"))
		}
	}
	cl := bmclib.NewClient(c.cfg.Host, c.cfg.Username, c.pass, opts...)
	cl.Registry.Drivers = cl.Registry.For(providers[c.cfg.Type])
	return cl
}

// do runs f in a session with the BMC, bounded by the timeout and ctx.
// what is the operation in words: "power on".
func (c *bmc) do(ctx context.Context, what string, f func(context.Context, *bmclib.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl := c.client()
	if len(cl.Registry.Drivers) == 0 {
		return fmt.Errorf("%s: bmclib has no %s driver for %s", c.machine, providers[c.cfg.Type], c.Describe())
	}
	step := "log in to the BMC (" + c.Describe() + ") to " + what
	err := cl.Open(ctx)
	if err == nil {
		step = what + " through the BMC (" + c.Describe() + ")"
		err = f(ctx, cl)
		if ctx.Err() == nil {
			// Log out (redfish, amt); never past a cancelled operation.
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			cl.Close(cctx)
			ccancel()
		}
	}
	if err == nil {
		return nil
	}
	return c.wrap(ctx, step, err)
}

// wrap says what failed in words that lead somewhere, without the password.
func (c *bmc) wrap(ctx context.Context, step string, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s: interrupted: %s", c.machine, step)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s: no answer within %s: %s; check bmc.address, that the BMC is on the network, and bmc.timeout", c.machine, c.timeout, step)
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if c.pass != "" {
		msg = strings.ReplaceAll(msg, c.pass, "[password]")
	}
	// bmclib's multi-provider framing says nothing with one provider.
	for _, noise := range []string{"* no Opener implementations found", "* no PowerStateGetter implementations found", "* no PowerSetter implementations found", "* no BootDeviceSetter implementations found"} {
		msg = strings.ReplaceAll(msg, noise, "")
	}
	for _, noise := range []string{"<nil>: ", "* failed to set boot device", "* failed to set power state", "* failed to get power state"} {
		msg = strings.ReplaceAll(msg, noise, "")
	}
	if i := strings.Index(msg, "errors occurred: * "); i >= 0 && i < 4 {
		msg = msg[i+len("errors occurred: * "):]
	}
	msg = strings.TrimSpace(msg)
	hint := ""
	switch {
	case strings.Contains(msg, "RAKP") || strings.Contains(msg, "RMCP+ session") || strings.Contains(msg, "nauthori") || strings.Contains(msg, "401"):
		hint = ": check bmc.address, bmc.username and the password"
	case strings.Contains(msg, "Invalid data field"):
		hint = ": the BMC does not support this command"
	}
	return fmt.Errorf("%s: could not %s: %s%s", c.machine, step, msg, hint)
}

func (c *bmc) Status(ctx context.Context) (State, error) {
	st := Unknown
	err := c.do(ctx, "report the power state", func(ctx context.Context, cl *bmclib.Client) error {
		s, err := cl.GetPowerState(ctx)
		st = parseState(s)
		return err
	})
	return st, err
}

// parseState reads what the providers say: "on"/"off" (amt), "On",
// "PoweringOn"... (redfish), "Chassis Power is on" (ipmitool).
func parseState(s string) State {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "chassis power is ")
	if s == "" {
		return Unknown
	}
	return State(s)
}

func (c *bmc) set(ctx context.Context, what, state string) error {
	return c.do(ctx, what, func(ctx context.Context, cl *bmclib.Client) error {
		ok, err := cl.SetPowerState(ctx, state)
		if err == nil && !ok {
			err = errors.New("the BMC did not confirm")
		}
		return err
	})
}

func (c *bmc) On(ctx context.Context) error  { return c.set(ctx, "power on", "on") }
func (c *bmc) Off(ctx context.Context) error { return c.set(ctx, "power off", "off") }

func (c *bmc) Cycle(ctx context.Context) error {
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if st == Off {
		return c.On(ctx)
	}
	return c.set(ctx, "power cycle", "cycle")
}

func (c *bmc) NetworkBoot(ctx context.Context) error {
	err := c.do(ctx, "set the next boot to the network", func(ctx context.Context, cl *bmclib.Client) error {
		ok, err := cl.SetBootDevice(ctx, "pxe", false, c.cfg.BootMode == config.BootModeUEFI)
		if err == nil && !ok {
			err = errors.New("the BMC did not confirm")
		}
		return err
	})
	if err != nil && ctx.Err() == nil {
		return noOverride{err}
	}
	return err
}

// noOverride is a refused next-boot override: errors.Is(ErrNoBootOverride).
type noOverride struct{ error }

func (noOverride) Is(target error) bool { return target == ErrNoBootOverride }
func (e noOverride) Unwrap() error      { return e.error }
