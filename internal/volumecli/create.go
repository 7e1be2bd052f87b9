package volumecli

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/blockdev"
	"tandem/internal/keyfile"
	"tandem/internal/replication"
	"tandem/internal/volume/meta"
)

// DefaultKeyFile is the cluster key `tandem keygen` writes.
const DefaultKeyFile = "/etc/tandem/cluster.key"

func createCmd(g *globals) *cobra.Command {
	var r record
	var size, metaSize, region, maxLag, rate string
	var uuid string
	var assumeClean, force bool
	cmd := &cobra.Command{
		Use:   "create NAME --backing PATH --node SELF --peer PEER --path LOCAL,PEER_ADDR:PORT [flags]",
		Short: "Create this node's replica of a volume (run on both nodes; the second with --uuid of the first)",
		Long: `create writes a replica's metadata on its backing device (at its end, or on
--meta) and records the volume in <state-dir>/volumes. Run it on both nodes with
the same sizes; give the second node the UUID the first printed (--uuid). A new
replica is Inconsistent: make one side primary with --force ('tandem volume
primary NAME --force') and it syncs the whole volume to the other. With
--assume-clean on both sides (devices known identical, e.g. both all zeroes)
both start UpToDate and nothing is synced.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r.Name = args[0]
			if err := validName(r.Name); err != nil {
				return err
			}
			if _, err := loadRecord(g.stateDir, r.Name); err == nil && !force {
				return fmt.Errorf("volume: %s is recorded already (%s); --force to replace the record and the metadata", r.Name, recordPath(g.stateDir, r.Name))
			}
			var errs []error
			for _, req := range []struct{ flag, v string }{{"--backing", r.Backing}, {"--node", r.Node}, {"--peer", r.Peer}} {
				if req.v == "" {
					errs = append(errs, fmt.Errorf("%s is required", req.flag))
				}
			}
			if len(r.Paths) == 0 {
				errs = append(errs, errors.New("--path LOCAL,PEER_ADDR:PORT is required (repeat it for more paths)"))
			}
			if _, err := r.linkPaths(); err != nil {
				errs = append(errs, err)
			}
			if _, err := r.replicationConfig(); err != nil {
				errs = append(errs, err)
			}
			if _, err := keyfile.Load(r.KeyFile); err != nil {
				errs = append(errs, fmt.Errorf("--key: %w (create one with tandem keygen, the same on both nodes)", err))
			}
			o := meta.DefaultCreateOptions()
			o.Node, o.Peer, o.Force, o.Name = r.Node, r.Peer, force, r.Backing
			var dataSize int64
			for _, s := range []struct {
				flag, v string
				to      *int64
			}{{"--size", size, &dataSize}, {"--region-size", region, &o.RegionSize}, {"--max-lag", maxLag, &r.MaxLag}, {"--rate", rate, &r.Rate}} {
				if s.v == "" {
					continue
				}
				n, err := parseSize(s.v)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", s.flag, err))
				}
				*s.to = n
			}
			if uuid != "" {
				id, err := replication.ParseVolumeID(uuid)
				if err != nil {
					errs = append(errs, fmt.Errorf("--uuid: %w", err))
				}
				o.ID = id
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			o.DataSize = dataSize
			if assumeClean {
				if o.ID == (replication.VolumeID{}) {
					return errors.New("volume: --assume-clean needs --uuid on both nodes (the same one), so both replicas start with the same generation")
				}
				o.Disk, o.Gen = replication.UpToDate, replication.GenIDs{Current: cleanGen(o.ID)}
			}
			dev, mdev, err := openForCreate(g.stateDir, g.logger(), r.Backing, r.Meta, dataSize, metaSize, o)
			if err != nil {
				return err
			}
			if mdev != nil {
				o.Meta = mdev
			}
			md, err := meta.Create(dev, o)
			if err != nil {
				dev.Close()
				if mdev != nil {
					mdev.Close()
				}
				return err
			}
			r.UUID, r.Size = md.ID().String(), md.DataSize()
			r.Created = time.Now().UTC()
			data := md.DataSize()
			if err := md.Close(); err != nil {
				return err
			}
			dev.Close()
			if mdev != nil {
				mdev.Close()
			}
			if err := saveJSON(recordPath(g.stateDir, r.Name), &r); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "volume %s created on %s: %s (%d bytes), uuid %s\n", r.Name, r.Backing, formatBytes(data), data, r.UUID)
			if uuid == "" {
				fmt.Fprintf(g.out, "on %s: tandem volume create %s --uuid %s --size %d --node %s --peer %s --backing ... --path ...\n", r.Peer, r.Name, r.UUID, data, r.Peer, r.Node)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Backing, "backing", "", "backing device: a file, a block device, or raid:NAME (a recorded tandem raid array)")
	f.StringVar(&size, "size", "", "data size (default: what the backing device holds beside the metadata); a missing backing file is created with it")
	f.StringVar(&r.Meta, "meta", "", "keep the metadata on this file or device instead of at the end of the backing device")
	f.StringVar(&metaSize, "meta-size", "", "size of a --meta file to create (default: what the metadata needs)")
	f.StringVar(&r.Node, "node", "", "this node's name")
	f.StringVar(&r.Peer, "peer", "", "the peer node's name")
	f.StringArrayVar(&r.Paths, "path", nil, "replication path LOCAL_ADDR[:PORT],PEER_ADDR:PORT (repeat for more paths, in preference order)")
	f.StringVar(&r.KeyFile, "key", DefaultKeyFile, "the cluster key (the same on both nodes); the link is TLS 1.3 keyed from it")
	f.StringVar(&r.Mode, "mode", "sync", "sync (a write is acknowledged once durable on both) or async (once durable here)")
	f.StringVar(&maxLag, "max-lag", "", "async: how far the peer may trail, in bytes (default 8M)")
	f.StringVar(&r.MaxLagTime, "max-lag-time", "", "async: how far the peer may trail, in time (default 2s)")
	f.StringVar(&r.OnLag, "on-lag", "throttle", "async, past max-lag: throttle (writes wait) or ahead (track in the bitmap, outdate the peer)")
	f.StringVar(&r.SplitBrain, "split-brain", "disconnect", "after a split brain: disconnect, discard-zero-changes, discard-younger-primary or discard-older-primary")
	f.StringVar(&rate, "rate", "", "resync and verify rate limit in bytes per second (default unlimited)")
	f.StringVar(&region, "region-size", "", "dirty-bitmap granularity (default 64K)")
	f.StringVar(&r.NBD, "nbd", "127.0.0.1:10809", "where the primary serves the volume over NBD: HOST:PORT or unix:PATH")
	f.StringVar(&uuid, "uuid", "", "the volume's UUID (the second node: the one the first printed)")
	f.BoolVar(&assumeClean, "assume-clean", false, "both backing devices are already identical: start UpToDate, no initial sync")
	f.BoolVar(&force, "force", false, "overwrite metadata or data found where the metadata goes")
	return cmd
}

// cleanGen is the generation both replicas of an --assume-clean volume
// start with: derived from the UUID, so both sides agree without talking.
func cleanGen(id replication.VolumeID) replication.GenID {
	h := sha256.Sum256(append([]byte("tandem volume assume-clean "), id[:]...))
	return replication.GenID(binary.LittleEndian.Uint64(h[:])|1<<63) &^ 1
}

// openForCreate opens (or creates) the backing device and the meta
// device. A missing backing file is created sparse with room for the data
// and internal metadata; a missing meta file with what the metadata needs.
func openForCreate(stateDir string, log *slog.Logger, backing, metaPath string, dataSize int64, metaSize string, o meta.CreateOptions) (blockdev.Device, blockdev.Device, error) {
	var dev blockdev.Device
	var err error
	if strings.HasPrefix(backing, "raid:") {
		dev, err = openBackingDevice(stateDir, backing, log)
	} else {
		need := dataSize
		if metaPath == "" && dataSize > 0 {
			need += meta.MetaSize(dataSize, o)
		}
		dev, err = openOrCreate(backing, need, "--size")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("volume: backing device: %w", err)
	}
	if metaPath == "" {
		return dev, nil, nil
	}
	ms := meta.MetaSize(dev.Size(), o)
	if dataSize > 0 {
		ms = meta.MetaSize(dataSize, o)
	}
	if metaSize != "" {
		if ms, err = parseSize(metaSize); err != nil {
			dev.Close()
			return nil, nil, err
		}
	}
	mdev, err := openOrCreate(metaPath, ms, "--meta-size")
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	return dev, mdev, nil
}

func openOrCreate(path string, size int64, flag string) (*blockdev.File, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if size <= 0 {
			return nil, fmt.Errorf("volume: %s does not exist; give %s to create it as a file", path, flag)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("volume: %w", err)
		}
		err = f.Truncate(size)
		f.Close()
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("volume: %w", err)
		}
	}
	return blockdev.OpenFile(path, false)
}
