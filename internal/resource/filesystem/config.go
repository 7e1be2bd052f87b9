package filesystem

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is one filesystem resource. The node fills it from the
// configuration's `filesystem:` entry (config.Filesystem, whose defaults
// come from config.DefaultFilesystem) and the volume's local NBD socket.
type Config struct {
	// Source is the NBD export to attach, served on this node by the
	// volume engine while its replica is primary:
	// nbd+unix:///NAME?socket=PATH or nbd://HOST[:PORT]/NAME (port 10809
	// when left out). TLS (nbds) is refused: the export is local.
	Source string
	// Mount is the absolute mount point, created (0755) when missing. It
	// is compared literally with /proc/self/mountinfo, so it must be the
	// real path (no symbolic link on the way).
	Mount string
	// FSType is ext4 or xfs (FSTypes).
	FSType string
	// Options are mount -o options as in fstab, comma-separated
	// ("noatime,discard"); empty for the file system's defaults.
	Options string
	// Fsck checks the file system before mounting it. ext4: e2fsck -p,
	// which replays the journal and repairs what is safe to repair
	// unattended; exit 0-3 mounts, 4 or more (errors left, operational
	// error) is a hard failure quoting e2fsck. xfs: nothing is run, by
	// design: xfs has no unattended repair (fsck.xfs is a no-op),
	// xfs_repair -n refuses a file system whose log is dirty, which is
	// every file system taken over from a crashed node, and the mount
	// itself replays the log and refuses a corrupt file system.
	Fsck bool
	// Mkfs makes the file system when the device has none (blkid finds
	// no signature): a new volume's first start. A device with any
	// signature is never touched.
	Mkfs bool
	// ForceUnmount is how long a stop lets the mount stay busy before it
	// kills the processes that hold it (working directory, root, open or
	// mapped files): SIGTERM, then SIGKILL forceKillAfter later. When the
	// stop's deadline comes sooner, the kill comes early enough to finish
	// within it. 0 never kills: a busy mount fails the stop.
	ForceUnmount time.Duration
	// StateDir holds what the agent attached (the FUSE mount and file,
	// nbdfuse's pid and log, the kernel nbd device it connected), one
	// directory per resource, so an agent restarted after a crash finds
	// what its predecessor left. Absolute, and not under Mount.
	StateDir string
}

// FSTypes are the file systems the agent checks, makes and mounts.
var FSTypes = []string{"ext4", "xfs"}

// defaultNBDPort is IANA's NBD port, what nbd:// means without one.
const defaultNBDPort = 10809

// source is a parsed NBD URI.
type source struct {
	socket string // unix socket path, or ""
	host   string // TCP host when socket is ""
	port   int
	export string
}

// parseSource accepts the two URI forms the volume engine serves.
func parseSource(uri string) (source, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return source{}, err
	}
	export, err := url.PathUnescape(strings.TrimPrefix(u.EscapedPath(), "/"))
	if err != nil {
		return source{}, err
	}
	s := source{export: export}
	switch u.Scheme {
	case "nbd+unix":
		if u.Host != "" {
			return source{}, fmt.Errorf("nbd+unix URI with a host %q (nbd+unix:///NAME?socket=PATH)", u.Host)
		}
		s.socket = u.Query().Get("socket")
		if !filepath.IsAbs(s.socket) {
			return source{}, fmt.Errorf("nbd+unix URI needs ?socket=ABSOLUTE-PATH, got %q", s.socket)
		}
	case "nbd":
		s.host, s.port = u.Hostname(), defaultNBDPort
		if s.host == "" {
			return source{}, errors.New("nbd URI without a host (nbd://HOST[:PORT]/NAME)")
		}
		if p := u.Port(); p != "" {
			if s.port, err = strconv.Atoi(p); err != nil || s.port < 1 || s.port > 65535 {
				return source{}, fmt.Errorf("port %q is not a TCP port", p)
			}
		}
	case "nbds", "nbds+unix":
		return source{}, fmt.Errorf("%s: TLS is not supported (the export is served on this node)", u.Scheme)
	default:
		return source{}, fmt.Errorf("scheme %q is not nbd or nbd+unix", u.Scheme)
	}
	return s, nil
}

// tcpAddr is host:port of a TCP source.
func (s source) tcpAddr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// Validate returns every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if c.Source == "" {
		bad("source", "required: the NBD export to mount (nbd+unix:///NAME?socket=PATH)")
	} else if _, err := parseSource(c.Source); err != nil {
		bad("source", "%q: %v", c.Source, err)
	}
	switch {
	case !filepath.IsAbs(c.Mount):
		bad("mount", "%q is not an absolute path", c.Mount)
	case filepath.Clean(c.Mount) == "/":
		bad("mount", "the root file system cannot be a resource's mount point")
	}
	if !slices.Contains(FSTypes, c.FSType) {
		bad("fstype", "%q is not one of %s", c.FSType, strings.Join(FSTypes, ", "))
	}
	if strings.ContainsAny(c.Options, " \t\n") {
		bad("options", "%q: mount options are comma-separated, without spaces", c.Options)
	} else if c.Options != "" && slices.Contains(strings.Split(c.Options, ","), "") {
		bad("options", "%q has an empty option", c.Options)
	}
	if c.ForceUnmount < 0 {
		bad("force_unmount", "%v is negative", c.ForceUnmount)
	}
	switch {
	case !filepath.IsAbs(c.StateDir):
		bad("state dir", "%q is not an absolute path", c.StateDir)
	case filepath.IsAbs(c.Mount) && within(filepath.Clean(c.StateDir), filepath.Clean(c.Mount)):
		bad("state dir", "%s is under the mount point %s, which hides it", c.StateDir, c.Mount)
	}
	return errors.Join(errs...)
}

// within reports whether path is dir or below it (both clean).
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}
