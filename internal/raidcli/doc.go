// Package raidcli owns the `tandem raid …` commands: create, assemble,
// status, examine, check, repair, serve (NBD), fail, remove, add, replace and
// bench. Arrays are recorded in <state-dir>/raid/NAME.json so later commands
// can name them; a served array listens for fail/remove/add/replace/check on
// a unix control socket, <state-dir>/raid/NAME.sock (HTTP/JSON, also
// GET /metrics), so those commands act on the running array instead of
// opening its members a second time. It imports raid, blockdev, events and nbd; only cmd/tandem imports it.
package raidcli
