//go:build !linux

package node

import "os"

// killSelf ends this process without clean-up.
func killSelf() { os.Exit(137) }
