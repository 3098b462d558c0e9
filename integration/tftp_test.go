package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestTFTP: atftp (blksize 1468 + tsize) and curl's tftp:// fetch ipxe.efi
// byte for byte; names that climb out of the iPXE directory are refused.
func TestTFTP(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "atftp", "curl")
	want, err := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		unavailable(t, "%v (Debian package ipxe)", err)
	}
	l := NewLab(t)
	// Serve a private copy two levels below the lab directory, with a secret
	// next to it and one above it that no TFTP client may read.
	root := filepath.Join(l.Dir, "srv", "tftp")
	ipxeDir := filepath.Join(root, "ipxe")
	ipxeCopy(t, ipxeDir)
	secret := "flint-tftp-secret-" + randHex(8) + "\n"
	l.writeFile(t, "srv/tftp/secret.txt", secret, 0o644)
	l.writeFile(t, "srv/secret.txt", secret, 0o644)
	cfg := l.WriteConfig(t, siteConfig{Mode: "off", IPXEDir: ipxeDir, Machines: []machine{node1}})
	l.StartFlint(t, cfg, filepath.Join(l.Dir, "data"))

	c := l.AddHost(t, "c1", "52:54:00:ee:00:01")
	c.SetAddress(t, "198.18.0.20/24")
	out := func(name string) string { return filepath.Join(l.Dir, "got-"+name) }

	t.Run("atftp-blksize-tsize", func(t *testing.T) {
		dst := out("atftp-ipxe.efi")
		r := l.Run(c.NS, 60*time.Second, "atftp", "--trace", "--option", "blksize 1468", "--option", "tsize 0", "-g", "-r", "ipxe.efi", "-l", dst, flintIP)
		if r.Err != nil {
			t.Fatalf("atftp failed\n%s", r)
		}
		sameFile(t, "atftp ipxe.efi", dst, want)
		// The server must have accepted both options: atftp prints the OACK.
		oack := regexp.MustCompile(`received OACK <([^>]*)>`).FindStringSubmatch(r.Stdout + r.Stderr)
		if oack == nil {
			t.Fatalf("no OACK: the server ignored blksize/tsize\n%s", r)
		}
		if !regexp.MustCompile(fmt.Sprintf(`\btsize: %d\b`, len(want))).MatchString(oack[1]) {
			t.Errorf("OACK <%s>: want tsize %d (the file's size)", oack[1], len(want))
		}
		// 1468 + 28 bytes of IPv4/UDP headers fit the 1500-byte MTU of the test
		// link, so the server has no reason to pick a smaller block.
		if !regexp.MustCompile(`\bblksize: 1468\b`).MatchString(oack[1]) {
			t.Errorf("OACK <%s>: want blksize 1468 as asked (IPv4, MTU 1500)", oack[1])
		}
	})

	t.Run("atftp-plain", func(t *testing.T) {
		wantKpxe, _ := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
		dst := out("atftp-undionly.kpxe")
		r := l.Run(c.NS, 60*time.Second, "atftp", "-g", "-r", "undionly.kpxe", "-l", dst, flintIP)
		if r.Err != nil {
			t.Fatalf("atftp (512-byte blocks, no options) failed\n%s", r)
		}
		sameFile(t, "atftp undionly.kpxe", dst, wantKpxe)
	})

	t.Run("curl-tftp", func(t *testing.T) {
		dst := out("curl-ipxe.efi")
		r := l.Run(c.NS, 60*time.Second, "curl", "-sS", "-m", "50", "--tftp-blksize", "1468", "-o", dst, "tftp://"+flintIP+"/ipxe.efi")
		if r.Err != nil {
			t.Fatalf("curl tftp:// failed\n%s", r)
		}
		sameFile(t, "curl ipxe.efi", dst, want)
	})

	t.Run("escapes-refused", func(t *testing.T) {
		names := []string{
			"../secret.txt",
			"../../secret.txt",
			"../../../../../../../../etc/passwd",
			"/../secret.txt",
			"ipxe.efi/../../secret.txt",
			"..\\secret.txt",
			"/etc/passwd",
			"no-such-file.efi",
		}
		for i, name := range names {
			dst := out(fmt.Sprintf("escape-%d", i))
			r := l.Run(c.NS, 20*time.Second, "atftp", "-g", "-r", name, "-l", dst, flintIP)
			got, _ := os.ReadFile(dst)
			if r.Code == 0 || len(got) > 0 {
				t.Errorf("atftp get %q: exit %d, %d bytes (%q); want an error and no bytes\n%s", name, r.Code, len(got), clip(string(got)), r)
			}
			// curl normalises /../ unless told not to.
			cdst := out(fmt.Sprintf("escape-curl-%d", i))
			r = l.Run(c.NS, 20*time.Second, "curl", "-sS", "-m", "15", "--path-as-is", "-o", cdst, "tftp://"+flintIP+"/"+name)
			got, _ = os.ReadFile(cdst)
			if r.Code == 0 || len(got) > 0 {
				t.Errorf("curl tftp://%s/%s: exit %d, %d bytes (%q); want an error and no bytes\n%s", flintIP, name, r.Code, len(got), clip(string(got)), r)
			}
		}
	})
}

func sameFile(t *testing.T, what, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Errorf("%s: got %d bytes, want %d identical bytes; first difference at offset %d", what, len(got), len(want), i)
	}
}
