//go:build !linux

package main

func openFileLimit() uint64 { return 0 }
