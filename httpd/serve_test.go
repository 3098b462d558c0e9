package httpd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flint-boot/flint/pki"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServe runs the three listeners for real: plain HTTP, HTTPS with a
// certificate from flint's CA, the admin socket (0600); connection caps;
// a clean stop.
func TestServe(t *testing.T) {
	f := newFixture(t)
	p, err := pki.Open(filepath.Join(t.TempDir(), "pki"), time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := p.Serving([]string{"localhost"}, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l := Listen{
		HTTP: freeAddr(t), HTTPS: freeAddr(t), TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Socket: filepath.Join(t.TempDir(), "flint.sock"), MaxConns: 8, MaxConnsPerClient: 3,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.s.Serve(ctx, l) }()

	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + l.HTTP + "/healthz"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("server never answered: %v", err)
	}
	resp.Body.Close()

	t.Run("https with flint's CA", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(p.CACertPEM())
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get("https://" + l.HTTPS + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if _, err := http.Get("https://" + l.HTTPS + "/healthz"); err == nil {
			t.Fatal("an HTTPS client without flint's CA accepted the certificate")
		}
	})
	t.Run("admin socket", func(t *testing.T) {
		fi, err := os.Stat(l.Socket)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
			t.Fatalf("socket %v %v", fi.Mode(), err)
		}
		c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", l.Socket)
		}}}
		resp, err := c.Get("http://flint/api/v1/machines")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("per-client connection cap", func(t *testing.T) {
		http.DefaultClient.CloseIdleConnections()
		time.Sleep(100 * time.Millisecond)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for range 3 {
			c, err := net.Dial("tcp", l.HTTP)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		time.Sleep(100 * time.Millisecond) // let the server accept them
		for i, c := range held {
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
				t.Fatalf("connection %d of 3 (within the cap) was closed: %v", i+1, err)
			}
		}
		c, err := net.Dial("tcp", l.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("a fourth connection from one address was not closed: %v", err)
		}
		for _, c := range held {
			c.Close()
		}
		held = nil
		time.Sleep(100 * time.Millisecond)
		resp, err := http.Get("http://" + l.HTTP + "/healthz")
		if err != nil {
			t.Fatalf("after the others closed: %v", err)
		}
		resp.Body.Close()
	})
	t.Run("a taken port fails at once", func(t *testing.T) {
		l2 := l
		l2.Socket = filepath.Join(t.TempDir(), "other.sock")
		err := f.s.Serve(context.Background(), l2)
		if err == nil {
			t.Fatal("Serve on taken ports returned nil")
		}
	})
	t.Run("a second flint on the same socket is refused", func(t *testing.T) {
		l2 := l
		l2.HTTP, l2.HTTPS = freeAddr(t), freeAddr(t)
		if err := f.s.Serve(context.Background(), l2); err == nil {
			t.Fatal("a second server took over a live admin socket")
		}
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := os.Stat(l.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket outlived the server: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

// TestCappedConnKeepsSendfile: the connection cap's wrapper must pass
// io.ReaderFrom through to the TCP connection, or net/http copies every asset
// byte through user space instead of sendfile.
func TestCappedConnKeepsSendfile(t *testing.T) {
	ln, err := listenTCP("127.0.0.1:0", 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Fatal("the capped connection hides io.ReaderFrom")
	}
	f, err := os.CreateTemp(t.TempDir(), "asset")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 1<<20))
	f.Seek(0, 0)
	n, err := c.(io.ReaderFrom).ReadFrom(f)
	if err != nil || n != 1<<20 {
		t.Fatalf("ReadFrom: %d %v", n, err)
	}
}
