// Command etcdrun runs the etcd of bench/ignition.sh's flint-etcd: a real TLS
// etcd cluster on 127.0.0.1 (Debian's etcd-server, client certificates),
// exactly the one internal/etcdtest starts for the tests (StartProgram), until
// it gets SIGTERM or SIGINT; then it kills the members by PID and exits. The
// members also die with it if it is killed (etcdtest sets their parent-death
// signal), so the script needs only etcdrun's PID; the members are its
// children (their CPU is counted through it).
//
//	etcdrun -dir DIR -members 3 -store DIR/store.yaml -env DIR/etcd.env
//
// Once the cluster answers linearizable reads it writes -store, flint's
// store section for it (backend etcd, endpoints, the CA, the admin client
// pair, a fresh encryption key, -prefix), and -env, the same as shell
// variables (STORE_ENDPOINTS, STORE_CA, STORE_CERT, STORE_KEY, STORE_PIDS)
// for curl and etcdctl, then prints "ready" on stdout.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/flint-boot/flint/internal/etcdtest"
)

func main() {
	dir := flag.String("dir", "", "directory for the members' data, certificates and logs (must exist; required)")
	members := flag.Int("members", 3, "number of members")
	storeFile := flag.String("store", "", "write flint's store: section for this cluster here (required)")
	envFile := flag.String("env", "", "write the cluster as shell variables here (required)")
	prefix := flag.String("prefix", "/flint/bench/", "store.prefix in -store")
	flag.Parse()
	if *dir == "" || *storeFile == "" || *envFile == "" || *members < 1 {
		flag.Usage()
		os.Exit(2)
	}
	// Signals before the start, so that a TERM during it still stops the members.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	c, stop, err := etcdtest.StartProgram(*dir, *members)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdrun: %v\n", err)
		os.Exit(1)
	}
	if err := write(c, *storeFile, *envFile, *prefix); err != nil {
		stop()
		fmt.Fprintf(os.Stderr, "etcdrun: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	s := <-sig
	stop()
	fmt.Fprintf(os.Stderr, "etcdrun: %v: stopped %d members\n", s, len(c.Members))
}

func write(c *etcdtest.Cluster, storeFile, envFile, prefix string) error {
	key := c.EncryptionKeyFile()
	var pids []string
	for _, m := range c.Members {
		pids = append(pids, strconv.Itoa(m.PID()))
	}
	section := fmt.Sprintf("store:\n  backend: etcd\n  endpoints: [%s]\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n  encryption_key_file: %s\n  prefix: %s\n",
		strings.Join(c.Endpoints(), ", "), c.CAFile, c.ClientCert, c.ClientKey, key, prefix)
	env := fmt.Sprintf("STORE_ENDPOINTS=%q\nSTORE_CA=%q\nSTORE_CERT=%q\nSTORE_KEY=%q\nSTORE_PIDS=%q\n",
		strings.Join(c.Endpoints(), " "), c.CAFile, c.ClientCert, c.ClientKey, strings.Join(pids, " "))
	if err := os.WriteFile(storeFile, []byte(section), 0o600); err != nil {
		return err
	}
	return os.WriteFile(envFile, []byte(env), 0o600)
}
