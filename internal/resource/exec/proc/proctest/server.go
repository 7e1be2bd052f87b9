package proctest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
)

// serverSource is a small HTTP server that tests run as a real service. Its
// flags make it misbehave in the ways agents must survive.
const serverSource = `package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	pidfile := flag.String("pidfile", "", "write own pid (and the child's to FILE.child)")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM")
	child := flag.Bool("child", false, "start a child process in the same process group")
	spew := flag.Int("spew", 0, "write this many bytes of random garbage to stdout first")
	readyAfter := flag.Duration("ready-after", 0, "wait this long before listening")
	daemon := flag.Bool("daemon", false, "detach into a new session (like a classic daemon)")
	flag.Parse()

	if *daemon && os.Getenv("PROCTEST_DETACHED") == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), "PROCTEST_DETACHED=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	if *pidfile != "" {
		os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	if *child {
		c := exec.Command("sleep", "300")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.WriteFile(*pidfile+".child", []byte(strconv.Itoa(c.Process.Pid)+"\n"), 0o644)
	}
	if *spew > 0 {
		b := make([]byte, *spew)
		rand.Read(b)
		os.Stdout.Write(b)
	}
	time.Sleep(*readyAfter)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("serving on", ln.Addr())
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", 500) })
	http.Serve(ln, nil)
}
`

// BuildServer compiles the test server into dir and returns its path.
// Flags: -addr, -pidfile, -ignore-term, -child, -spew N, -ready-after D,
// -daemon.
func BuildServer(dir string) (string, error) {
	src := filepath.Join(dir, "server.go")
	if err := os.WriteFile(src, []byte(serverSource), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "testserver")
	// go test puts its own toolchain first in PATH.
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building test server: %v\n%s", err, out)
	}
	return bin, nil
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
