package config

import (
	"slices"
	"strings"
	"testing"
)

// volumeBase is base with a database group on a replicated volume.
const volumeBase = `  - name: db
    resources:
      - vip: {address: 10.0.0.60/24, interface: eth0}
      - volume: {name: pgdata}
      - filesystem: {volume: pgdata, mount: /srv/pg, fstype: ext4, options: noatime}
      - nbd_export: {volume: pgdata}
volumes:
  - name: pgdata
    size: 1GiB
    replicas:
      - {node: db1, backing: /var/lib/tandem/pgdata.img}
      - {node: db2, backing: "raid:md0"}
`

func TestVolumeConfigIsValid(t *testing.T) {
	c, err := Parse("t.yaml", []byte(edit(nil, volumeBase)))
	if err != nil {
		t.Fatalf("valid volume config: %v", err)
	}
	v := c.VolumeByName("pgdata")
	if v == nil || v.Size != 1<<30 || v.Mode != "sync" || v.SplitBrain != "discard-older-primary" || v.Port != 7790 || v.MaxLag != 64<<20 {
		t.Fatalf("volume with its defaults: %+v", v)
	}
	fs := c.Groups[1].Resources[2].Filesystem
	if fs == nil || !fs.Fsck || fs.ForceUnmount.D().Seconds() != 10 || c.Groups[1].Resources[2].Name != "filesystem-2" {
		t.Fatalf("filesystem with its defaults: %+v", c.Groups[1].Resources[2])
	}
	if e := c.Groups[1].Resources[3].NBDExport; e == nil || e.Port != 10809 {
		t.Fatalf("nbd_export with its defaults: %+v", e)
	}
	if got := c.Groups[1].Resources[1].Kind(); got != "volume" {
		t.Fatalf("kind %q", got)
	}
}

// The bad input, each refused with a message naming the field.
func TestVolumeConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		from string // in volumeBase
		to   string
		add  string // appended
		want string
	}{
		{"volume used by no group", "      - volume: {name: pgdata}\n", "", "",
			`volumes[0].name: volume "pgdata" is used by no group`},
		{"volume used by two groups", "", "", "  - name: other\n    resources:\n      - volume: {name: pgdata}\n",
			"", // the yaml order puts it after volumes; see below
		},
		{"filesystem before its volume", "      - volume: {name: pgdata}\n      - filesystem: {volume: pgdata, mount: /srv/pg, fstype: ext4, options: noatime}\n",
			"      - filesystem: {volume: pgdata, mount: /srv/pg, fstype: ext4, options: noatime}\n      - volume: {name: pgdata}\n", "",
			`groups[1].resources[1].filesystem.volume: volume "pgdata" must be promoted by a volume resource earlier in this group`},
		{"filesystem on a volume of another group", "      - filesystem: {volume: pgdata,", "      - filesystem: {volume: other,", "",
			`groups[1].resources[2].filesystem.volume: "other" is not a volume (volumes are pgdata)`},
		{"unknown volume", "      - volume: {name: pgdata}", "      - volume: {name: pgdta}", "",
			`groups[1].resources[1].volume.name: "pgdta" is not a volume (volumes are pgdata)`},
		{"one replica", "      - {node: db2, backing: \"raid:md0\"}\n", "", "",
			"volumes[0].replicas: a volume has exactly two replicas (a hot-standby pair), got 1"},
		{"both replicas on one node", "{node: db2, backing", "{node: db1, backing", "",
			`volumes[0].replicas[1].node: "db1" holds a replica of this volume already`},
		{"replica on the witness", "{node: db2, backing", "{node: arbiter, backing", "",
			`volumes[0].replicas[1].node: "arbiter" is the witness, which never runs resources`},
		{"relative backing", "backing: /var/lib/tandem/pgdata.img", "backing: pgdata.img", "",
			`volumes[0].replicas[0].backing: "pgdata.img" must be an absolute path`},
		{"size not aligned", "size: 1GiB", "size: 1000", "",
			"volumes[0].size: 1000 is not a multiple of 4096 bytes"},
		{"no size", "    size: 1GiB\n", "", "",
			"volumes[0].size: required: the volume's size (e.g. 10GiB)"},
		{"bad mode", "    size: 1GiB\n", "    size: 1GiB\n    mode: semi\n", "",
			`volumes[0].mode: "semi" is not one of sync, async`},
		{"port of the cluster", "    size: 1GiB\n", "    size: 1GiB\n    port: 7789\n", "",
			"volumes[0].port: 7789 is used by port (the cluster's) already"},
		{"bad fstype", "fstype: ext4", "fstype: ntfs", "",
			`groups[1].resources[2].filesystem.fstype: "ntfs" is not one of ext4, xfs`},
		{"mount on /", "mount: /srv/pg", "mount: /", "",
			"groups[1].resources[2].filesystem.mount: the root file system cannot be a mount point of a resource"},
		{"nbd_export without a vip", "      - vip: {address: 10.0.0.60/24, interface: eth0}\n", "", "",
			"groups[1].resources[2].nbd_export: an nbd_export serves on its group's VIP: add a vip resource to group db"},
		{"group node without a replica", "  - name: db\n", "  - name: db\n    nodes: [db1, db2, db3]\n", "",
			`groups[1].nodes[2]: "db3" holds no replica of volume "pgdata"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "volume used by two groups" {
				y := edit(nil, strings.Replace(volumeBase, "volumes:\n", "  - name: other\n    resources:\n      - volume: {name: pgdata}\nvolumes:\n", 1))
				want := `volumes[0].name: volume "pgdata" is used by groups db and other: one volume, one group`
				checkProblem(t, y, want)
				return
			}
			vb := volumeBase
			if tt.from != "" {
				if !strings.Contains(vb, tt.from) {
					t.Fatalf("%q is not in volumeBase", tt.from)
				}
				vb = strings.Replace(vb, tt.from, tt.to, 1)
			}
			y := edit(nil, vb+tt.add)
			if tt.name == "group node without a replica" {
				y = strings.Replace(y, "  - {name: db2, links: [10.0.0.2]}\n", "  - {name: db2, links: [10.0.0.2]}\n  - {name: db3, links: [10.0.0.4]}\n", 1)
			}
			checkProblem(t, y, tt.want)
		})
	}
}

func checkProblem(t *testing.T, y, want string) {
	t.Helper()
	_, err := Parse("t.yaml", []byte(y))
	lines := problemLines(err)
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) }) {
		t.Fatalf("want a problem containing %q, got:\n%s\nconfig:\n%s", want, strings.Join(lines, "\n"), y)
	}
}
